#!/usr/bin/env node
// fastwal benchmark: `npm run bench` (= node bench/run.mjs). Measures the BUILT package
// (dist/, build/Release or prebuilds/); it builds nothing. Every measurement runs in a
// fresh child process (bench/worker.mjs); this process only orchestrates, takes medians
// and prints the tables and the goal ratios. See bench/README.md.
import { fork, execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import { createRequire } from 'node:module'
import * as os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '..')
const require = createRequire(import.meta.url)

// --- options -------------------------------------------------------------------------

const USAGE = `usage: npm run bench -- [options]      (or: node bench/run.mjs [options])
  --scale <f>     multiply every workload size by f (default 1; 0.05 for a quick run)
  --only <list>   workloads to run, comma-separated: A,B,C,D,E,F,J,S,O,R,L,H (default all; J needs nats-server)
  --runs <n>      runs of each measurement; the tables show medians (default 3; O does 3n)
  --dir <path>    data directory (default <repo>/.bench-data, or os.tmpdir() if that is tmpfs)
  --json <file>   also write every run's raw results to <file>
  --keep          keep the data directory afterwards
  -h, --help      this text`

const ALL_WORKLOADS = ['A', 'B', 'C', 'D', 'E', 'F', 'J', 'S', 'O', 'R', 'L', 'H']

function parseOptions(argv) {
  let values
  try {
    ;({ values } = parseArgs({
      args: argv,
      options: {
        scale: { type: 'string', default: '1' },
        only: { type: 'string', default: ALL_WORKLOADS.join(',') },
        runs: { type: 'string', default: '3' },
        dir: { type: 'string' },
        json: { type: 'string' },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }))
  } catch (err) {
    die(`${err.message}\n${USAGE}`)
  }
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const o = {
    scale: Number(values.scale),
    only: values.only.split(',').map((s) => s.trim().toUpperCase()).filter(Boolean),
    runs: Number(values.runs),
    dir: values.dir === undefined ? undefined : resolve(values.dir),
    json: values.json === undefined ? undefined : resolve(values.json),
    keep: values.keep,
  }
  if (!(o.scale > 0)) die('--scale must be a positive number')
  if (!Number.isInteger(o.runs) || o.runs < 1) die('--runs must be a positive integer')
  for (const w of o.only) if (!ALL_WORKLOADS.includes(w)) die(`--only: unknown workload ${w} (use ${ALL_WORKLOADS.join(',')})`)
  return o
}

function die(msg) {
  console.error(msg)
  process.exit(2)
}

const opts = parseOptions(process.argv.slice(2))

// --- the built package ---------------------------------------------------------------

let pkg
try {
  pkg = await import('../dist/esm/index.mjs')
  if (typeof pkg.WriteAheadLog?.open !== 'function' || pkg.crc32c(Buffer.from('123456789')) !== 0xe3069283) throw new Error('unexpected exports')
} catch (err) {
  die(`Cannot load the built package from dist/ (${err.message}).\nBuild it first: npm run build (addon + TypeScript) or npm run build:ts.`)
}
const { addon, error: addonError } = require('../dist/cjs/bundle.js').internal.loadAddon()
if (!addon) die(`The native addon did not load (${addonError?.message.split('\n')[0]}). Build it first: npm run build:native.`)

// --- data directory ------------------------------------------------------------------

function mountOf(path) {
  let real = path
  try {
    real = fs.realpathSync(path)
  } catch {}
  let best = { mount: '/', type: 'unknown', device: 'unknown' }
  try {
    const unesc = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)))
    for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [device, mp, type] = line.split(' ').map(unesc)
      if (!mp) continue
      const inside = real === mp || real.startsWith(mp.endsWith('/') ? mp : mp + '/')
      if (inside && mp.length >= best.mount.length) best = { mount: mp, type, device }
    }
  } catch {
    try {
      const out = execFileSync('df', ['-T', real], { encoding: 'utf8' }).trim().split('\n').pop().split(/\s+/)
      best = { mount: out[6] ?? '?', type: out[1] ?? 'unknown', device: out[0] ?? '?' }
    } catch {}
  }
  return best
}

const isRamFs = (t) => t === 'tmpfs' || t === 'ramfs'

function chooseDataDir() {
  if (opts.dir) {
    fs.mkdirSync(opts.dir, { recursive: true })
    return opts.dir
  }
  const inRepo = join(root, '.bench-data')
  fs.mkdirSync(inRepo, { recursive: true })
  if (!isRamFs(mountOf(inRepo).type)) return inRepo
  const tmp = join(os.tmpdir(), 'fastwal-bench')
  if (!isRamFs(mountOf(os.tmpdir()).type)) {
    try {
      fs.rmdirSync(inRepo) // only if empty: another run may be using it
    } catch {}
    fs.mkdirSync(tmp, { recursive: true })
    return tmp
  }
  return inRepo
}

const dataParent = chooseDataDir()
// A subdirectory of our own, so that two bench runs at once cannot delete each other's data.
const dataDir = join(dataParent, `run-${process.pid}`)
fs.rmSync(dataDir, { recursive: true, force: true })
fs.mkdirSync(dataDir, { recursive: true })
const mount = mountOf(dataDir)
let currentChild
let stopping = false
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    // Stop the running measurement, start no other, and leave no data behind.
    if (stopping) return
    stopping = true
    const finish = () => {
      if (!opts.keep) fs.rmSync(dataDir, { recursive: true, force: true })
      process.exit(130)
    }
    const c = currentChild
    if (c && c.exitCode === null && c.signalCode === null) {
      c.once('exit', finish)
      c.kill('SIGKILL')
    } else finish()
  })
}
const warnings = []
if (isRamFs(mount.type))
  warnings.push(
    `WARNING: the data directory ${dataDir} is on ${mount.type} (memory). fdatasync there is a no-op, so every durable figure below is meaningless as a disk figure. Pass --dir on a real disk.`,
  )
if (mount.type === 'overlay') warnings.push(`note: ${dataDir} is on overlayfs; syncs go to its upper layer's filesystem.`)

// --- workloads -----------------------------------------------------------------------

const S = opts.scale
const n = (base, min) => Math.max(min, Math.round(base * S))
const A_RECORDS = Math.max(1000, Math.round((200_000 * S) / 100) * 100)
const B_RECORDS = n(100_000, 512)
const B_WARMUP = n(10_000, 256)
const C_RECORDS = n(500_000, 5000)
const D_RECORDS = n(1_000_000, 10_000)
const L_RECORDS = n(20_000, 2_000)
const R_BIG_BYTES = Math.max(64 * 2 ** 20, Math.round(2 ** 30 * S))
const E_SECONDS = Math.min(0.5, Math.max(0.1, 0.5 * S))
const F_RECORDS = Math.max(1000, Math.round((100_000 * S) / 100) * 100)
const S_ITER = n(1000, 50)
const O_SEGMENTS = n(1000, 10)
const O_SEGSIZE = 4096
const H_SECONDS = Math.max(1, Math.round(3 * S))
const H_STORES = ['fastwal-native', 'fastwal-js', 'sqlite', 'lmdb', 'none']
const H_CONNS = [64, 256]

const RAW = ['raw-append', 'raw-sparse', 'raw-zeroed']
const LABEL = {
  ...Object.fromEntries(
    H_CONNS.flatMap((c) =>
      H_STORES.map((st) => [
        `${st}-${c}`,
        `${{ 'fastwal-native': 'fastwal native', 'fastwal-js': 'fastwal pure-TS', sqlite: 'better-sqlite3', lmdb: 'lmdb (await flushed)', none: 'no storage' }[st]}, ${c} connections`,
      ]),
    ),
  ),
  'native-small': 'fastwal native, 10 records',
  'js-small': 'fastwal pure-TS, 10 records',
  'sqlite-small': 'better-sqlite3 (WAL, synchronous=FULL), 10 rows',
  'lmdb-small': 'lmdb, 10 entries',
  lmdb: 'lmdb 3.5 (put, then await its flushed)',
  'native-big': 'fastwal native, big log',
  'js-big': 'fastwal pure-TS, big log',
  native: 'fastwal native',
  js: 'fastwal pure-TS',
  'raw-append': 'raw fs, O_APPEND file',
  'raw-sparse': 'raw fs, prealloc by ftruncate',
  'raw-zeroed': 'raw fs, prealloc zero-filled',
  'raw-zeroed-blocking': '(info) raw fs, zero-filled, blocking calls',
  'native-await': 'native, await append()',
  'js-await': 'pure-TS, await append()',
  'native-sync': 'native, appendSync()',
  'js-sync': 'pure-TS, appendSync()',
  'native-async': 'native, for await replay()',
  'js-async': 'pure-TS, for await replay()',
  'native-replaySync': 'native, replaySync()',
  'native-async-batched': 'native, replay(), log written in batches of 1,000',
  'native-batches-batched': 'native, replayBatches(), same log',
  'js-async-batched': 'pure-TS, replay(), log written in batches of 1,000',
  raw: 'raw fs, length-prefixed scan',
  'native-256K': 'native, 256 KiB',
  'js-256K': 'pure-TS, 256 KiB',
  'api-256K': 'crc32c() export, 256 KiB',
  'native-100B': 'native, 100 B',
  'js-100B': 'pure-TS, 100 B',
  'api-100B': 'crc32c() export, 100 B',
  append: 'O_APPEND file (grows)',
  sparse: 'prealloc by ftruncate',
  zeroed: 'prealloc zero-filled',
  'native-1': 'native, 1 segment',
  'native-N': `native, ${O_SEGMENTS} segments`,
  'js-1': 'pure-TS, 1 segment',
  'js-N': `pure-TS, ${O_SEGMENTS} segments`,
  'native-1-64M': 'native, 1 segment of 64 MiB',
  'native-in-process': 'native, same process',
  'js-in-process': 'pure-TS, same process',
  'native-other-process': 'native, other process',
  'js-other-process': 'pure-TS, other process',
  ship: 'fastwal shipper',
  bare: 'bare @nats-io/jetstream publish loop',
}

const rate = (v) => (v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e4 ? `${(v / 1e3).toFixed(1)}k` : v.toFixed(0))
const ms = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3))
const fixed = (d) => (v) => v.toFixed(d)

const WORKLOADS = {
  L: {
    title: `L: event-loop delay across segment rotations: ${L_RECORDS.toLocaleString('en')} durable appends of 1 KB, 64 in flight, 64 KiB segments`,
    variants: ['native', 'js'],
    job: { records: L_RECORDS },
    columns: [
      ['appendsPerSec', 'appends/s', rate],
      ['rotations', 'rotations', fixed(0)],
      ['eldP50Ms', 'loop delay p50 ms', ms],
      ['eldP99Ms', 'loop delay p99 ms', ms],
      ['eldMaxMs', 'loop delay max ms', ms],
      ['maxOverP99Ms', 'max - p99 ms', ms],
    ],
  },
  R: {
    title: `R: restart: a fresh process loads the library, opens an existing store and reads its first entry (10 records; and a ${(R_BIG_BYTES / 2 ** 30).toFixed(2)} GiB fastwal log)`,
    variants: ['native-small', 'js-small', 'sqlite-small', 'lmdb-small', 'native-big', 'js-big'],
    setup: [{ name: 'stores', job: { bigBytes: R_BIG_BYTES } }],
    columns: [
      ['sinceStartMs', 'process start to first entry ms', ms],
      ['importMs', 'import ms', ms],
      ['openMs', 'open ms', ms],
      ['readMs', 'first read ms', ms],
      ['afterImportMs', 'open + read ms', ms],
    ],
  },
  A: {
    title: `A: ${A_RECORDS.toLocaleString('en')} records (16 B key + 100 B value) in durable batches of 100, sync 'always', each batch awaited`,
    variants: ['native', 'js', ...RAW, 'raw-zeroed-blocking'],
    job: { records: A_RECORDS },
    columns: [
      ['recordsPerSec', 'records/s', rate],
      ['commitsPerSec', 'commits/s', rate],
      ['commitP50Ms', 'commit p50 ms', ms],
      ['commitP99Ms', 'commit p99 ms', ms],
    ],
  },
  B: {
    title: `B: ${B_RECORDS.toLocaleString('en')} durable single appends, 256 in flight (a new one starts when one resolves), after ${B_WARMUP.toLocaleString('en')} untimed`,
    variants: ['native', 'js', ...RAW, 'lmdb'],
    job: { records: B_RECORDS, inflight: 256, warmup: B_WARMUP },
    columns: [
      ['recordsPerSec', 'records/s', rate],
      ['appendP50Ms', 'append p50 ms', ms],
      ['appendP99Ms', 'append p99 ms', ms],
      ['eldP99Ms', 'loop delay p99 ms', ms],
      ['eldMaxMs', 'loop delay max ms', ms],
      ['syncs', 'syncs', fixed(0)],
      ['recordsPerSync', 'records/sync', fixed(1)],
    ],
  },
  C: {
    title: `C: ${C_RECORDS.toLocaleString('en')} single appends, sync 'none'`,
    variants: ['native-await', 'js-await', 'native-sync', 'js-sync'],
    job: { records: C_RECORDS },
    columns: [
      ['recordsPerSec', 'records/s', rate],
      ['recordsPerSecInclClose', 'incl. close', rate],
      ['closeMs', 'close ms', ms],
    ],
  },
  D: {
    title: `D: replay of ${D_RECORDS.toLocaleString('en')} entries (116 B each) in a fresh process`,
    variants: ['native-async', 'js-async', 'native-replaySync', 'native-async-batched', 'native-batches-batched', 'js-async-batched', 'raw'],
    setup: [{ name: 'data', job: { records: D_RECORDS } }],
    columns: [
      ['entriesPerSec', 'entries/s', rate],
      ['openMs', 'open ms', ms],
      ['replayRssGrowthMiB', 'RSS growth in replay MiB', fixed(1)],
      ['processRssGrowthMiB', 'RSS growth incl. open MiB', fixed(1)],
      ['peakRssMiB', 'peak RSS MiB', fixed(1)],
    ],
  },
  E: {
    title: 'E: CRC32C throughput',
    variants: ['native-256K', 'js-256K', 'api-256K', 'native-100B', 'js-100B', 'api-100B'],
    job: { seconds: E_SECONDS },
    columns: [
      ['gbPerSec', 'GB/s', fixed(2)],
      ['mopsPerSec', 'M ops/s', fixed(2)],
    ],
    noDir: true,
  },
  F: {
    title: `F: a follower while the writer runs A (${F_RECORDS.toLocaleString('en')} records in durable batches of 100): in the writer's process, and in another (readOnly)`,
    variants: ['native-in-process', 'js-in-process', 'native-other-process', 'js-other-process'],
    job: { records: F_RECORDS },
    columns: [
      ['followedPerSec', 'entries/s followed', rate],
      ['writerRecordsPerSec', 'writer records/s', rate],
      ['followP50Ms', 'latency p50 ms', ms],
      ['followP99Ms', 'latency p99 ms', ms],
      ['maxLagEntries', 'max lag entries', fixed(0)],
      ['idleCpuPct', 'idle CPU %', fixed(2)],
    ],
  },
  J: {
    title: `J: shipping into NATS JetStream (${Math.max(1000, Math.round((50_000 * S) / 100) * 100).toLocaleString('en')} records in batches of 100, loopback nats-server): shipping a backlog vs a bare publish loop of the same bodies; latency of live durable batches`,
    variants: ['ship', 'bare'],
    job: { records: Math.max(1000, Math.round((50_000 * S) / 100) * 100) },
    columns: [
      ['batchesPerSec', 'batches/s', rate],
      ['mbPerSec', 'MB/s', fixed(1)],
      ['shipP50Ms', 'latency p50 ms', ms],
      ['shipP99Ms', 'latency p99 ms', ms],
    ],
  },
  S: {
    title: `S: fdatasync latency of this disk (${S_ITER} x [4 KiB write + fdatasync], synchronous calls)`,
    variants: ['append', 'sparse', 'zeroed'],
    job: { iterations: S_ITER },
    columns: [
      ['syncP50Ms', 'fdatasync p50 ms', ms],
      ['syncP99Ms', 'fdatasync p99 ms', ms],
      ['syncMeanMs', 'mean ms', ms],
      ['syncsPerSec', 'syncs/s (1/mean)', rate],
      ['writeSyncP50Ms', 'write+sync p50 ms', ms],
    ],
  },
  O: {
    title: `O: open time (writable open, recovery of the tail) with 1 and ${O_SEGMENTS} segments of ${O_SEGSIZE} B`,
    variants: ['native-1', 'native-N', 'js-1', 'js-N', 'native-1-64M'],
    setup: [
      { name: '1', job: { segments: 1, segmentSize: O_SEGSIZE } },
      { name: 'N', job: { segments: O_SEGMENTS, segmentSize: O_SEGSIZE } },
      { name: '64M', job: { segments: 1, segmentSize: 64 * 1024 * 1024, records: 13 } },
    ],
    setupFor: (v) => (v.endsWith('64M') ? '64M' : v.split('-')[1]),
    jobFor: (v) => ({ segmentSize: v.endsWith('64M') ? 64 * 1024 * 1024 : O_SEGSIZE }),
    columns: [['openMs', 'open ms', ms]],
    runsFactor: 3, // a few ms each: more runs for a steadier median
  },
  H: {
    title: `H: HTTP ingestion service (Fastify, 202 only once durable; autocannon, ${H_SECONDS} s per cell; bench/ingest.mjs, also \`npm run bench:ingest\`)`,
    variants: H_CONNS.flatMap((c) => H_STORES.map((st) => `${st}-${c}`)),
    runsFactor: 0, // one run of every cell, by runAll
    runAll: runIngest,
    columns: [
      ['reqPerSec', 'req/s', rate],
      ['p50Ms', 'p50 ms', fixed(1)],
      ['p99Ms', 'p99 ms', fixed(1)],
      ['eldP99Ms', 'loop p99 ms', fixed(1)],
      ['rssMiB', 'RSS MiB', fixed(0)],
      ['cpuUsPerRequest', 'CPU µs/req', fixed(0)],
      ['perSync', 'events/sync', fixed(1)],
      ['countOk', 'count check', (v) => (v ? 'ok' : 'MISMATCH')],
    ],
  },
}

/** H: bench/ingest.mjs in a child process (it starts a server process per cell); its rows by variant. */
function runIngest(wdir) {
  return new Promise((resolveRun, rejectRun) => {
    if (stopping) return
    fs.mkdirSync(wdir, { recursive: true })
    const out = join(wdir, 'ingest.json')
    const args = [join(here, 'ingest.mjs'), '--duration', String(H_SECONDS), '--connections', H_CONNS.join(','), '--dir', join(wdir, 'data'), '--json', out]
    const child = fork(args[0], args.slice(1), { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
    currentChild = child
    child.stdout.on('data', (d) => {
      for (const line of String(d).split('\n')) if (line.startsWith('{')) process.stdout.write('.')
    })
    child.on('error', rejectRun)
    child.on('exit', (code, signal) => {
      let rows
      try {
        rows = JSON.parse(fs.readFileSync(out, 'utf8')).results
      } catch {
        return rejectRun(new Error(`H: bench/ingest.mjs failed (exit ${code ?? signal})`))
      }
      // count check: 1 when every 202 was on disk (medians stay numbers)
      // (A failed count check also makes ingest.mjs exit 1: its rows say MISMATCH and a goal row counts it.)
      resolveRun(Object.fromEntries(rows.map((r) => [`${r.store}-${r.connections}`, { ...r, countOk: r.countOk ? 1 : 0 }])))
    })
  })
}

// --- child processes -------------------------------------------------------------------

const WORKER = join(here, 'worker.mjs')
const CHILD_TIMEOUT_MS = 10 * 60 * 1000

function runChild(job) {
  return new Promise((resolveRun, rejectRun) => {
    if (stopping) return // never settles: the signal handler is about to exit
    const child = fork(WORKER, [JSON.stringify(job)], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' })
    currentChild = child
    let msg
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      rejectRun(new Error(`${job.workload}/${job.variant}: no result after ${CHILD_TIMEOUT_MS / 1000} s`))
    }, CHILD_TIMEOUT_MS)
    child.on('message', (m) => (msg = m))
    child.on('error', (err) => {
      clearTimeout(timer)
      rejectRun(err)
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (msg?.ok) resolveRun(msg.result)
      else rejectRun(new Error(`${job.workload}/${job.variant} failed (exit ${code ?? signal}): ${msg?.error ?? 'no result'}`))
    })
  })
}

function median(xs) {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length & 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function medianOf(results) {
  const out = {}
  for (const k of Object.keys(results[0] ?? {})) {
    if (typeof results[0][k] === 'number') out[k] = median(results.map((r) => r[k]))
    else out[k] = results[0][k]
  }
  return out
}

const rm = (p) => fs.rmSync(p, { recursive: true, force: true })

// --- run -------------------------------------------------------------------------------

const started = Date.now()
const loadStart = os.loadavg()
const machine = machineInfo()

console.log('fastwal benchmark')
console.log(`  ${machine.cpu} (${machine.cores} logical cores), ${machine.memGiB} GiB RAM, ${machine.os}`)
console.log(`  node ${process.version}, fastwal ${machine.version} @ ${machine.commit}, CRC32C: ${machine.crcImpl}, addon ${machine.addonPath}`)
console.log(`  data: ${dataDir} on ${mount.type} (${mount.device}, mounted at ${mount.mount})`)
console.log(`  scale ${S}, ${opts.runs} run(s) per measurement (medians shown), each in a fresh process; load average ${loadStart.map((x) => x.toFixed(2)).join(' ')}`)
for (const w of warnings) console.log(`\n${w}`)
console.log('')

const results = {} // workload -> variant -> [run results]
const setups = {} // workload -> setup name -> result
const medians = {}
let failures = 0

for (const w of opts.only) {
  const spec = WORKLOADS[w]
  const wdir = join(dataDir, w)
  rm(wdir)
  results[w] = {}
  setups[w] = {}
  process.stdout.write(`${spec.title}\n  running`)
  try {
    if (spec.runAll) for (const [v, res] of Object.entries(await spec.runAll(wdir))) results[w][v] = [res]
    for (const s of spec.setup ?? []) {
      const sdir = join(wdir, `setup-${s.name}`)
      setups[w][s.name] = await runChild({ workload: `setup-${w}`, variant: s.name, dir: sdir, scale: S, ...s.job })
      process.stdout.write('.')
    }
    for (let r = 0; r < opts.runs * (spec.runsFactor ?? 1); r++) {
      // Rotate the order each run so that slow drift (page cache, other load) is shared out.
      const order = spec.variants.map((_, i) => spec.variants[(i + r) % spec.variants.length])
      for (const v of order) {
        const setupName = spec.setup ? (spec.setupFor ? spec.setupFor(v) : spec.setup[0].name) : undefined
        const dir = spec.noDir ? undefined : setupName ? join(wdir, `setup-${setupName}`) : join(wdir, `${v}-run${r}`)
        try {
          const res = await runChild({ workload: w, variant: v, dir, scale: S, ...spec.job, ...(spec.jobFor ? spec.jobFor(v) : {}) })
          ;(results[w][v] ??= []).push(res)
          process.stdout.write('.')
        } catch (err) {
          failures++
          process.stdout.write('x')
          console.error(`\n  ${err.message}`)
        } finally {
          if (dir && !setupName) rm(dir)
        }
      }
    }
  } catch (err) {
    failures++
    console.error(`\n  ${err.message}`)
  } finally {
    if (!opts.keep) rm(wdir)
  }
  process.stdout.write('\n')
  medians[w] = {}
  for (const v of spec.variants) if (results[w][v]?.length) medians[w][v] = medianOf(results[w][v])
  printTable(spec, w)
}

if (!opts.keep) {
  rm(dataDir)
  // The parent directory is ours unless the user named it; remove it if it is now empty.
  if (!opts.dir) {
    try {
      fs.rmdirSync(dataParent)
    } catch {}
  }
}

const goals = evaluateGoals()
printGoals(goals)

const loadEnd = os.loadavg()
const elapsed = (Date.now() - started) / 1000
console.log(`\nfinished in ${elapsed.toFixed(0)} s; load average ${loadEnd.map((x) => x.toFixed(2)).join(' ')} (was ${loadStart.map((x) => x.toFixed(2)).join(' ')})`)
for (const w of warnings) console.log(w)
if (failures) console.log(`${failures} measurement(s) failed; see the messages above.`)

if (opts.json) {
  fs.writeFileSync(
    opts.json,
    JSON.stringify({ machine, dataDir, mount, scale: S, runs: opts.runs, elapsedSec: elapsed, loadStart, loadEnd, setups, results, medians, goals }, null, 2) + '\n',
  )
  console.log(`raw results written to ${opts.json}`)
}
process.exitCode = failures ? 1 : 0

// --- output ----------------------------------------------------------------------------

function printTable(spec, w) {
  for (const [name, s] of Object.entries(setups[w])) console.log(`  setup ${name}: ${JSON.stringify(s)}`)
  const head = ['', ...spec.columns.map((c) => c[1])]
  const rows = [head]
  for (const v of spec.variants) {
    const m = medians[w][v]
    if (!m) {
      rows.push([LABEL[v] ?? v, ...spec.columns.map(() => 'failed')])
      continue
    }
    rows.push([LABEL[v] ?? v, ...spec.columns.map(([k, , f]) => (Number.isFinite(m[k]) ? f(m[k]) : '-'))])
  }
  const widths = head.map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  for (const [i, r] of rows.entries()) {
    console.log('  ' + r.map((c, j) => (j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join('  '))
    if (i === 0) console.log('  ' + widths.map((x) => '-'.repeat(x)).join('  '))
  }
  if (w === 'E') {
    const impl = medians.E['native-256K']?.implementation
    if (impl) console.log(`  native implementation: ${impl}`)
  }
  console.log('')
}

function get(w, v, k) {
  return medians[w]?.[v]?.[k]
}

function evaluateGoals() {
  const out = []
  // kind 'ratio': value = a / b, met when value >= goal. 'max': value <= goal. 'min': value >= goal.
  const ratio = (name, a, b, goal, note) => {
    if (!Number.isFinite(a) || !Number.isFinite(b)) return
    out.push({ name, value: a / b, goal, kind: 'ratio', met: a / b >= goal, note })
  }
  const atLeast = (name, v, goal, unit, fmt) => {
    if (!Number.isFinite(v)) return
    out.push({ name, value: v, goal, kind: 'min', unit, fmt, met: v >= goal })
  }
  const below = (name, v, goal, unit, fmt) => {
    if (!Number.isFinite(v)) return
    out.push({ name, value: v, goal, kind: 'max', unit, fmt, met: v < goal })
  }
  const bestRaw = (w, k, list) => {
    let best = -Infinity
    let who
    for (const v of list) {
      const x = get(w, v, k)
      if (Number.isFinite(x) && x > best) {
        best = x
        who = v
      }
    }
    return { best: who ? best : NaN, who }
  }
  below('L native: loop delay max - p99 across rotations', get('L', 'native', 'maxOverP99Ms'), 2, 'ms', ms)
  below('L pure-TS: loop delay max - p99 across rotations', get('L', 'js', 'maxOverP99Ms'), 2, 'ms', ms)
  // R: time to the first entry; the ratio is the reference's time over fastwal's (>= 1: fastwal as fast or faster).
  ratio('R restart, 10 records: better-sqlite3 time / fastwal native time', get('R', 'sqlite-small', 'sinceStartMs'), get('R', 'native-small', 'sinceStartMs'), 1)
  ratio('R restart, 10 records: lmdb time / fastwal native time', get('R', 'lmdb-small', 'sinceStartMs'), get('R', 'native-small', 'sinceStartMs'), 1)
  ratio('R restart, open + read only: better-sqlite3 / fastwal native', get('R', 'sqlite-small', 'afterImportMs'), get('R', 'native-small', 'afterImportMs'), 1)
  // A: against the faster of the two preallocated raw files.
  const aRaw = bestRaw('A', 'recordsPerSec', ['raw-sparse', 'raw-zeroed'])
  ratio('A native / raw-fs preallocated (records/s)', get('A', 'native', 'recordsPerSec'), aRaw.best, 1.0, aRaw.who && `vs ${LABEL[aRaw.who]}`)
  ratio('A pure-TS / raw-fs preallocated (records/s)', get('A', 'js', 'recordsPerSec'), aRaw.best, 0.8, aRaw.who && `vs ${LABEL[aRaw.who]}`)
  // B: against the best raw group commit.
  const bRaw = bestRaw('B', 'recordsPerSec', RAW)
  ratio('B native / raw-fs group commit (records/s)', get('B', 'native', 'recordsPerSec'), bRaw.best, 1.5, bRaw.who && `vs ${LABEL[bRaw.who]}`)
  below('B native event-loop delay p99', get('B', 'native', 'eldP99Ms'), 2, 'ms', ms)
  ratio('B native / lmdb (records/s)', get('B', 'native', 'recordsPerSec'), get('B', 'lmdb', 'recordsPerSec'), 1.5)
  ratio('B event-loop delay p99: lmdb / fastwal native (>= 1: no worse)', get('B', 'lmdb', 'eldP99Ms'), get('B', 'native', 'eldP99Ms'), 1)
  atLeast("C native sync:'none' awaited append", get('C', 'native-await', 'recordsPerSec'), 450_000, '/s', rate)
  atLeast('C native appendSync', get('C', 'native-sync', 'recordsPerSec'), 1_000_000, '/s', rate)
  ratio('D native replay / raw-fs view-decoding scan', get('D', 'native-async', 'entriesPerSec'), get('D', 'raw', 'entriesPerSec'), 0.5, 'for await replay()')
  ratio('D native replay of a batch-written log / raw-fs scan', get('D', 'native-async-batched', 'entriesPerSec'), get('D', 'raw', 'entriesPerSec'), 0.7, 'batches of 1,000')
  ratio('D native replayBatches() of the batch-written log / raw-fs scan', get('D', 'native-batches-batched', 'entriesPerSec'), get('D', 'raw', 'entriesPerSec'), 0.7, 'a batch per promise')
  const dPeak = get('D', 'native-async-batched', 'peakRssMiB') - get('D', 'raw', 'peakRssMiB')
  below('D native replay peak RSS - raw-fs scan peak RSS (batch-written log)', dPeak, 32, 'MiB', fixed(1))
  const dPeakB = get('D', 'native-batches-batched', 'peakRssMiB') - get('D', 'raw', 'peakRssMiB')
  below('D native replayBatches() peak RSS - raw-fs scan peak RSS (same log)', dPeakB, 32, 'MiB', fixed(1))
  below('D native peak RSS growth during replay', get('D', 'native-async', 'replayRssGrowthMiB'), 64, 'MiB', fixed(1))
  below('D native peak RSS growth, open + replay', get('D', 'native-async', 'processRssGrowthMiB'), 64, 'MiB', fixed(1))
  atLeast('E native CRC32C, 256 KiB', get('E', 'native-256K', 'gbPerSec'), 15, 'GB/s', fixed(2))
  below('F native follow latency p99, same process', get('F', 'native-in-process', 'followP99Ms'), 0.5, 'ms', ms)
  below('F native follow latency p99, other process', get('F', 'native-other-process', 'followP99Ms'), 10, 'ms', ms)
  below('F native follower idle CPU, same process', get('F', 'native-in-process', 'idleCpuPct'), 1, '%', fixed(2))
  below('F native follower idle CPU, other process', get('F', 'native-other-process', 'idleCpuPct'), 1, '%', fixed(2))
  ratio('J shipping / bare publish loop (batches/s)', get('J', 'ship', 'batchesPerSec'), get('J', 'bare', 'batchesPerSec'), 0.8)
  below('J shipping latency p99 (append acknowledged -> stream acknowledged)', get('J', 'ship', 'shipP99Ms'), 20, 'ms', ms)
  // H: the HTTP ingestion service, per connection count.
  for (const c of H_CONNS) {
    const fw = (k) => get('H', `fastwal-native-${c}`, k)
    ratio(`H ${c} conns: fastwal native / no storage (req/s)`, fw('reqPerSec'), get('H', `none-${c}`, 'reqPerSec'), 0.85)
    for (const [st, name] of [['sqlite', 'better-sqlite3'], ['lmdb', 'lmdb']]) {
      ratio(`H ${c} conns: fastwal native / ${name} (req/s)`, fw('reqPerSec'), get('H', `${st}-${c}`, 'reqPerSec'), 1.3)
      ratio(`H ${c} conns: p99 latency, ${name} / fastwal native (>= 1: no worse)`, get('H', `${st}-${c}`, 'p99Ms'), fw('p99Ms'), 1)
    }
  }
  const hCounts = H_STORES.flatMap((st) => H_CONNS.map((c) => get('H', `${st}-${c}`, 'countOk'))).filter(Number.isFinite)
  if (hCounts.length) atLeast('H count check: cells where every 202 was on disk', hCounts.filter((x) => x === 1).length, hCounts.length, `of ${hCounts.length}`, fixed(0))
  // native >= pure-TS on every workload
  ratio('A native / pure-TS', get('A', 'native', 'recordsPerSec'), get('A', 'js', 'recordsPerSec'), 1)
  ratio('B native / pure-TS', get('B', 'native', 'recordsPerSec'), get('B', 'js', 'recordsPerSec'), 1)
  ratio('C native / pure-TS, await append', get('C', 'native-await', 'recordsPerSec'), get('C', 'js-await', 'recordsPerSec'), 1)
  ratio('C native / pure-TS, appendSync', get('C', 'native-sync', 'recordsPerSec'), get('C', 'js-sync', 'recordsPerSec'), 1)
  ratio('D native / pure-TS, replay', get('D', 'native-async', 'entriesPerSec'), get('D', 'js-async', 'entriesPerSec'), 1)
  ratio('E native / pure-TS, 256 KiB', get('E', 'native-256K', 'gbPerSec'), get('E', 'js-256K', 'gbPerSec'), 1)
  ratio('E native / pure-TS, 100 B', get('E', 'native-100B', 'mopsPerSec'), get('E', 'js-100B', 'mopsPerSec'), 1)
  ratio(`O native / pure-TS, open of ${O_SEGMENTS} segments (speed)`, get('O', 'js-N', 'openMs'), get('O', 'native-N', 'openMs'), 1)
  // Open time independent of the number of segments (threshold: our choice, see README).
  const o1 = get('O', 'native-1', 'openMs')
  const oN = get('O', 'native-N', 'openMs')
  if (Number.isFinite(o1) && Number.isFinite(oN))
    out.push({ name: `O native open, ${O_SEGMENTS} segments / 1 segment (time)`, value: oN / o1, goal: 1.5, kind: 'ratio-max', met: oN / o1 <= 1.5, note: `${ms(o1)} ms vs ${ms(oN)} ms` })
  return out
}

function printGoals(goals) {
  if (goals.length === 0) return
  console.log('Goals (ratios from this run\'s medians)')
  const rows = [['', 'measured', 'goal', '']]
  for (const g of goals) {
    let measured
    let goal
    if (g.kind === 'ratio') {
      measured = `${g.value.toFixed(2)}x`
      goal = `>= ${g.goal}x`
    } else if (g.kind === 'ratio-max') {
      measured = `${g.value.toFixed(2)}x`
      goal = `<= ${g.goal}x`
    } else if (g.kind === 'min') {
      measured = `${g.fmt(g.value)} ${g.unit}`
      goal = `>= ${g.fmt(g.goal)} ${g.unit}`
    } else {
      measured = `${g.fmt(g.value)} ${g.unit}`
      goal = `< ${g.fmt(g.goal)} ${g.unit}`
    }
    rows.push([g.name, measured, goal, (g.met ? 'met' : 'NOT MET') + (g.note ? `  (${g.note})` : '')])
  }
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i].length)))
  for (const [i, r] of rows.entries()) {
    console.log(`  ${r[0].padEnd(widths[0])}  ${r[1].padStart(widths[1])}  ${r[2].padStart(widths[2])}  ${r[3]}`)
    if (i === 0) console.log('  ' + widths.map((x) => '-'.repeat(x)).join('  '))
  }
  const met = goals.filter((g) => g.met).length
  console.log(`  ${met} of ${goals.length} met`)
}

function machineInfo() {
  const cpus = os.cpus()
  let commit = 'unknown'
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib', 'native'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    if (dirty) commit += ' (lib/native modified)'
  } catch {}
  return {
    cpu: cpus[0]?.model?.trim() ?? 'unknown CPU',
    cores: cpus.length,
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    version: JSON.parse(fs.readFileSync(join(root, 'package.json'), 'utf8')).version,
    commit,
    crcImpl: addon.crc32cImplementation?.() ?? 'unknown',
    addonPath: addonPath(),
  }
}

function addonPath() {
  try {
    return require('node-gyp-build').path(process.env.FASTWAL_NATIVE_DIR || root).replace(root + '/', '')
  } catch {
    return 'unknown'
  }
}
