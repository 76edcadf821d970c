// One measurement in one fresh process. bench/run.mjs forks this file with a JSON job
// ({ workload, variant, dir, scale, ... }) as its only argument; the result goes back
// over the IPC channel as one plain object. Nothing here builds anything: fastwal is
// imported from the built package (dist/).
import * as fs from 'node:fs'
import { createRequire } from 'node:module'
import { execFileSync, spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { WriteAheadLog, crc32c } from '../dist/esm/index.mjs'

const require = createRequire(import.meta.url)
const here = dirname(fileURLToPath(import.meta.url))

// --- shared data ---------------------------------------------------------------------

const KEY_SIZE = 16
const VALUE_SIZE = 100
const RAW_RECORD = KEY_SIZE + VALUE_SIZE // a raw-fs record: the same key and value bytes, no framing
const POOL = 4096 // distinct keys/values, reused cyclically (content does not change timings)
const MASK = POOL - 1
const keys = []
const values = []
{
  const kb = Buffer.allocUnsafe(POOL * KEY_SIZE)
  const vb = Buffer.allocUnsafe(POOL * VALUE_SIZE)
  let x = 0x9e3779b9
  for (let i = 0; i < kb.length; i++) kb[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24
  for (let i = 0; i < vb.length; i++) vb[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24
  for (let i = 0; i < POOL; i++) {
    keys.push(kb.subarray(i * KEY_SIZE, (i + 1) * KEY_SIZE))
    values.push(vb.subarray(i * VALUE_SIZE, (i + 1) * VALUE_SIZE))
  }
}

const SEGMENT = 64 * 1024 * 1024 // fastwal's default segmentSize, used for the preallocated raw files

const now = () => performance.now()

function percentile(sorted, q) {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i]
}

function latencyStats(lat, prefix) {
  const s = Float64Array.from(lat).sort()
  return { [`${prefix}P50Ms`]: percentile(s, 0.5), [`${prefix}P99Ms`]: percentile(s, 0.99) }
}

// --- raw fs helpers (callback API wrapped once: the cheapest async form node:fs offers) --

function writeP(fd, buf, off, len, pos) {
  return new Promise((resolve, reject) => fs.write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))))
}
async function writeAll(fd, buf, len, pos) {
  // pos null: O_APPEND file, the kernel picks the offset
  for (let done = 0; done < len; ) {
    const n = await writeP(fd, buf, done, len - done, pos === null ? null : pos + done)
    if (n <= 0) throw new Error('write made no progress')
    done += n
  }
}
function fdatasyncP(fd) {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())))
}

/**
 * Opens a raw-fs file. kind: 'append' (O_APPEND, grows with every write), 'sparse'
 * (preallocated with ftruncate, as fastwal preallocates its segments), 'zeroed'
 * (preallocated by writing zeros, so later writes allocate nothing). Setup is synced and
 * not timed.
 */
function openRaw(dir, kind, bytesNeeded) {
  const path = join(dir, `raw-${kind}.dat`)
  if (kind === 'append') {
    const fd = fs.openSync(path, 'a')
    fs.fsyncSync(fd)
    syncDir(dir)
    return { fd, positional: false }
  }
  const fd = fs.openSync(path, 'w+')
  if (kind === 'sparse') {
    fs.ftruncateSync(fd, Math.max(SEGMENT, bytesNeeded))
  } else {
    const z = Buffer.alloc(1024 * 1024)
    const size = Math.ceil(bytesNeeded / z.length) * z.length
    for (let p = 0; p < size; p += z.length) fs.writeSync(fd, z, 0, z.length, p)
  }
  fs.fsyncSync(fd)
  syncDir(dir)
  return { fd, positional: true }
}

function syncDir(dir) {
  const fd = fs.openSync(dir, 'r')
  fs.fsyncSync(fd)
  fs.closeSync(fd)
}

const isRaw = (variant) => variant.startsWith('raw-')
const rawKind = (variant) => variant.slice(4)

// --- A: durable batches of 100, each awaited ------------------------------------------

async function workloadA({ variant, dir, records }) {
  const BATCH = 100
  const batches = Math.max(1, Math.round(records / BATCH))
  const lat = new Float64Array(batches)
  let i = 0
  let t0, t1
  if (isRaw(variant)) {
    // raw-zeroed-blocking (for information): the same with blocking calls, no thread-pool trips
    const blocking = variant.endsWith('-blocking')
    const { fd, positional } = openRaw(dir, rawKind(variant).replace('-blocking', ''), batches * BATCH * RAW_RECORD)
    const buf = Buffer.allocUnsafe(BATCH * RAW_RECORD)
    let pos = 0
    t0 = now()
    for (let b = 0; b < batches; b++) {
      const s = now()
      let p = 0
      for (let j = 0; j < BATCH; j++, i++) {
        p += keys[i & MASK].copy(buf, p)
        p += values[i & MASK].copy(buf, p)
      }
      if (blocking) {
        for (let done = 0; done < p; ) done += fs.writeSync(fd, buf, done, p - done, positional ? pos + done : null)
        fs.fdatasyncSync(fd)
        await undefined // the loop still yields once per batch, like an awaited append
      } else {
        await writeAll(fd, buf, p, positional ? pos : null)
        await fdatasyncP(fd)
      }
      pos += p
      lat[b] = now() - s
    }
    t1 = now()
    fs.closeSync(fd)
  } else {
    const wal = await WriteAheadLog.open(dir, { backend: variant, sync: 'always' })
    t0 = now()
    for (let b = 0; b < batches; b++) {
      const s = now()
      const ops = new Array(BATCH)
      for (let j = 0; j < BATCH; j++, i++) ops[j] = { type: 'put', key: keys[i & MASK], value: values[i & MASK] }
      await wal.appendBatch(ops)
      lat[b] = now() - s
    }
    t1 = now()
    await wal.close()
  }
  const sec = (t1 - t0) / 1000
  return { records: batches * BATCH, recordsPerSec: (batches * BATCH) / sec, commitsPerSec: batches / sec, ...latencyStats(lat, 'commit') }
}

// --- B: durable single appends, 256 in flight -----------------------------------------

/** A simple group commit over raw fs: appends pending while a write+sync is in flight share the next one. */
function rawGroupCommit(fd, positional) {
  let stage = Buffer.allocUnsafe(256 * 1024)
  let spare = Buffer.allocUnsafe(256 * 1024)
  let len = 0
  let waiters = []
  let busy = false
  let scheduled = false
  let pos = 0
  let syncs = 0
  const flush = () => {
    scheduled = false
    if (busy || waiters.length === 0) return
    busy = true
    const buf = stage
    const n = len
    const ws = waiters
    stage = spare
    len = 0
    waiters = []
    const at = positional ? pos : null
    pos += n
    writeAll(fd, buf, n, at)
      .then(() => {
        syncs++
        return fdatasyncP(fd)
      })
      .then(
        () => {
          spare = buf
          busy = false
          for (const w of ws) w.resolve()
          if (waiters.length > 0 && !scheduled) {
            scheduled = true
            queueMicrotask(flush) // runs after the continuations just released have appended again
          }
        },
        (err) => {
          for (const w of ws) w.reject(err)
        },
      )
  }
  return {
    append(key, value) {
      if (len + RAW_RECORD > stage.length) {
        const grown = Buffer.allocUnsafe(stage.length * 2)
        stage.copy(grown, 0, 0, len)
        stage = grown
      }
      len += key.copy(stage, len)
      len += value.copy(stage, len)
      return new Promise((resolve, reject) => {
        waiters.push({ resolve, reject })
        if (!busy && !scheduled) {
          scheduled = true
          queueMicrotask(flush) // like fastwal: appends made in the same tick share the write
        }
      })
    },
    get syncs() {
      return syncs
    },
  }
}

async function workloadB({ variant, dir, records, inflight, warmup = 0 }) {
  const N = records
  const lat = new Float64Array(N)
  let append
  let syncsIssued
  let wal
  let raw
  let fdRaw = -1
  let lastDurable = 0
  let durableSteps = 0
  let lmdb
  if (isRaw(variant)) {
    const o = openRaw(dir, rawKind(variant), (N + warmup) * RAW_RECORD)
    fdRaw = o.fd
    raw = rawGroupCommit(o.fd, o.positional)
    append = (i) => raw.append(keys[i & MASK], values[i & MASK])
  } else if (variant === 'lmdb') {
    // lmdb-js batches puts into one transaction per turn; its put promise resolves at
    // commit, and (overlappingSync, the default) `flushed` once that commit is on disk.
    lmdb = require('lmdb').open({ path: dir, encoding: 'binary' })
    append = (i) => lmdb.put(i, values[i & MASK]).then(() => lmdb.flushed)
  } else {
    wal = await WriteAheadLog.open(dir, { backend: variant, sync: 'always' })
    lastDurable = wal.durableLsn
    append = (i) => wal.append({ type: 'put', key: keys[i & MASK], value: values[i & MASK] })
  }
  // `inflight` appends at a time, each replaced when it resolves, `count` in all. The
  // warm-up runs the same loop untimed first: without it a run of this size is mostly JIT
  // compilation (20,000 appends took 74 ms here, with some 55 loop-delay samples).
  const loop = (count, record) =>
    new Promise((resolveAll, rejectAll) => {
      let started = 0
      let done = 0
      const startOne = () => {
        const i = started++
        const s = now()
        append(i).then(() => {
          if (record) record(i, s)
          done++
          if (started < count) startOne()
          else if (done === count) resolveAll()
        }, rejectAll)
      }
      for (let k = 0; k < Math.min(inflight, count); k++) startOne()
    })
  if (warmup > 0) await loop(warmup)
  if (wal) lastDurable = wal.durableLsn
  const rawSyncsBefore = raw ? raw.syncs : 0
  const eld = monitorEventLoopDelay({ resolution: 1 })
  const t0 = now()
  eld.enable()
  await loop(N, (i, s) => {
    lat[i] = now() - s
    if (wal) {
      // Every completed fdatasync raises durableLsn once; counting its distinct values
      // seen by resolutions counts the syncs that acknowledged appends.
      const d = wal.durableLsn
      if (d !== lastDurable) {
        lastDurable = d
        durableSteps++
      }
    }
  })
  const t1 = now()
  eld.disable()
  if (wal) {
    await wal.close()
    syncsIssued = durableSteps
  } else if (lmdb) {
    syncsIssued = NaN // lmdb does not tell its syncs apart
    await lmdb.close()
  } else {
    syncsIssued = raw.syncs - rawSyncsBefore
    fs.closeSync(fdRaw)
  }
  // The histogram records the whole interval between timer runs; the delay is what
  // exceeds the 1 ms resolution.
  const delay = (v) => Math.max(0, v / 1e6 - 1)
  return {
    records: N,
    recordsPerSec: N / ((t1 - t0) / 1000),
    ...latencyStats(lat, 'append'),
    eldP99Ms: delay(eld.percentile(99)),
    eldMaxMs: delay(eld.max),
    syncs: syncsIssued,
    recordsPerSync: N / syncsIssued,
  }
}

// --- C: non-durable single appends ------------------------------------------------------

async function workloadC({ variant, dir, records }) {
  const [backend, mode] = variant.split('-') // native-await, js-sync, ...
  const wal = await WriteAheadLog.open(dir, { backend, sync: 'none' })
  const N = records
  const t0 = now()
  if (mode === 'await') {
    for (let i = 0; i < N; i++) await wal.append({ type: 'put', key: keys[i & MASK], value: values[i & MASK] })
  } else {
    for (let i = 0; i < N; i++) wal.appendSync({ type: 'put', key: keys[i & MASK], value: values[i & MASK] })
  }
  const t1 = now()
  await wal.close() // hands what is still staged to the OS and syncs once
  const t2 = now()
  return { records: N, recordsPerSec: N / ((t1 - t0) / 1000), closeMs: t2 - t1, recordsPerSecInclClose: N / ((t2 - t0) / 1000) }
}

// --- D: replay -------------------------------------------------------------------------

const RAW_LOG = 'raw-lp.dat'

async function setupD({ dir, records }) {
  // fastwal log, written by the native backend (both backends write identical files)
  const wal = await WriteAheadLog.open(join(dir, 'wal'), { backend: 'native', sync: 'none' })
  for (let i = 0; i < records; i++) wal.appendSync({ type: 'put', key: keys[i & MASK], value: values[i & MASK] })
  await wal.close()
  // The same entries written in batches of 1,000 (BEGIN, members, COMMIT).
  const batched = await WriteAheadLog.open(join(dir, 'wal-batched'), { backend: 'native', sync: 'none' })
  for (let i = 0; i < records; i += 1000) {
    const ops = []
    for (let j = i; j < Math.min(records, i + 1000); j++) ops.push({ type: 'put', key: keys[j & MASK], value: values[j & MASK] })
    batched.appendBatchSync(ops)
  }
  await batched.close()
  // raw-fs file: the same keys and values, each as [u32 key length][u32 value length][key][value]
  const fd = fs.openSync(join(dir, RAW_LOG), 'w')
  const buf = Buffer.allocUnsafe(1024 * 1024)
  let p = 0
  for (let i = 0; i < records; i++) {
    if (p + 8 + RAW_RECORD > buf.length) {
      fs.writeSync(fd, buf, 0, p)
      p = 0
    }
    const k = keys[i & MASK]
    const v = values[i & MASK]
    buf.writeUInt32LE(k.length, p)
    buf.writeUInt32LE(v.length, p + 4)
    p += 8
    p += k.copy(buf, p)
    p += v.copy(buf, p)
  }
  fs.writeSync(fd, buf, 0, p)
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  const segs = fs.readdirSync(join(dir, 'wal')).filter((n) => n.endsWith('.wal'))
  const walBytes = segs.reduce((s, n) => s + fs.statSync(join(dir, 'wal', n)).size, 0)
  return { records, walSegments: segs.length, walBytes, rawBytes: fs.statSync(join(dir, RAW_LOG)).size }
}

/** The raw-fs baseline: 1 MiB async reads, decoding views of each length-prefixed record. */
async function rawScan(path, consume) {
  const CHUNK = 1024 * 1024
  const fd = fs.openSync(path, 'r')
  let position = 0
  let carry = null
  for (;;) {
    const buf = Buffer.allocUnsafe(CHUNK + (carry ? carry.length : 0)) // fresh per chunk: views stay valid, as fastwal's do
    let have = 0
    if (carry) have = carry.copy(buf, 0)
    const n = await new Promise((resolve, reject) => fs.read(fd, buf, have, CHUNK, position, (err, r) => (err ? reject(err) : resolve(r))))
    position += n
    const end = have + n
    let p = 0
    while (p + 8 <= end) {
      const kl = buf.readUInt32LE(p)
      const vl = buf.readUInt32LE(p + 4)
      const e = p + 8 + kl + vl
      if (e > end) break
      consume(buf.subarray(p + 8, p + 8 + kl), buf.subarray(p + 8 + kl, e))
      p = e
    }
    carry = p < end ? buf.subarray(p, end) : null
    if (n === 0) break
  }
  fs.closeSync(fd)
}

async function workloadD({ variant, dir }) {
  // run.mjs starts workers with --expose-gc. V8 releases freed backing stores on a
  // background thread, so settle() gives it a moment before RSS is read.
  const gc = globalThis.gc ?? (() => {})
  const settle = async () => {
    gc()
    await new Promise((r) => setTimeout(r, 50))
    gc()
  }
  await settle()
  const rssStart = process.memoryUsage.rss()
  let count = 0
  let bytes = 0
  let peak = 0
  let openMs = 0
  let t1, t2, rssBefore
  const sample = () => {
    const r = process.memoryUsage.rss()
    if (r > peak) peak = r
  }
  if (variant === 'raw') {
    await settle()
    rssBefore = process.memoryUsage.rss()
    peak = rssBefore
    t1 = now()
    await rawScan(join(dir, RAW_LOG), (k, v) => {
      count++
      bytes += k.length + v.length
      if ((count & 8191) === 0) sample()
    })
    t2 = now()
  } else {
    const [backend, how, written] = variant.split('-')
    const t0 = now()
    const wal = await WriteAheadLog.open(join(dir, written === 'batched' ? 'wal-batched' : 'wal'), { backend })
    openMs = now() - t0
    await settle() // what open allocated and dropped is not counted as replay growth
    rssBefore = process.memoryUsage.rss()
    peak = rssBefore
    t1 = now()
    if (how === 'replaySync') {
      for (const e of wal.replaySync({ from: 0 })) {
        count++
        bytes += e.key.length + e.value.length
        if ((count & 8191) === 0) sample()
      }
    } else if (how === 'batches') {
      // Each batch's entries handed over at once: one promise per batch, not per entry.
      for await (const b of wal.replayBatches({ from: 0 })) {
        for (const e of b.entries) {
          count++
          bytes += e.key.length + e.value.length
          if ((count & 8191) === 0) sample()
        }
      }
    } else {
      for await (const e of wal.replay({ from: 0 })) {
        count++
        bytes += e.key.length + e.value.length
        if ((count & 8191) === 0) sample()
      }
    }
    t2 = now()
    await wal.close()
  }
  sample()
  const maxRss = process.resourceUsage().maxRSS * 1024
  return {
    entries: count,
    payloadBytes: bytes,
    entriesPerSec: count / ((t2 - t1) / 1000),
    openMs,
    replayRssGrowthMiB: (peak - rssBefore) / 2 ** 20,
    peakRssMiB: maxRss / 2 ** 20,
    processRssGrowthMiB: (maxRss - rssStart) / 2 ** 20,
  }
}

// --- E: CRC32C ---------------------------------------------------------------------------

function workloadE({ variant, seconds }) {
  const [impl, sizeName] = variant.split('-')
  const size = sizeName === '256K' ? 256 * 1024 : 100
  let fn
  let implementation = impl
  if (impl === 'native') {
    const { addon, error } = require('../dist/cjs/bundle.js').internal.loadAddon()
    if (!addon) throw error
    fn = addon.crc32c
    implementation = `native (${addon.crc32cImplementation?.() ?? '?'})`
  } else if (impl === 'js') {
    fn = require('../dist/cjs/bundle.js').internal.crc32cJs
    implementation = 'pure-TS slicing-by-8'
  } else {
    fn = crc32c // the public export, with its argument checks
    implementation = 'public crc32c()'
  }
  const bufs = []
  for (let i = 0; i < 16; i++) {
    const b = Buffer.allocUnsafe(size)
    for (let j = 0; j < size; j++) b[j] = (i * 31 + j * 7) & 0xff
    bufs.push(b)
  }
  let acc = 0
  const run = (budgetMs) => {
    let ops = 0
    const block = size > 4096 ? 16 : 4096
    const t0 = now()
    let t
    do {
      for (let k = 0; k < block; k++) acc ^= fn(bufs[k & 15], 0)
      ops += block
      t = now()
    } while (t - t0 < budgetMs)
    return { ops, ms: t - t0 }
  }
  run(Math.min(200, seconds * 400)) // warm-up (JIT, caches)
  const { ops, ms } = run(seconds * 1000)
  const sec = ms / 1000
  return { implementation, size, gbPerSec: (ops * size) / sec / 1e9, mopsPerSec: ops / sec / 1e6, checksum: acc >>> 0 }
}

// --- S: fdatasync latency ----------------------------------------------------------------

function workloadS({ variant, dir, iterations }) {
  const PAGE = 4096
  const { fd, positional } = openRaw(dir, variant, iterations * PAGE)
  const buf = Buffer.alloc(PAGE, 0x5a)
  const syncLat = new Float64Array(iterations)
  const totalLat = new Float64Array(iterations)
  for (let i = 0; i < iterations; i++) {
    const t0 = now()
    fs.writeSync(fd, buf, 0, PAGE, positional ? i * PAGE : null)
    const t1 = now()
    fs.fdatasyncSync(fd)
    const t2 = now()
    syncLat[i] = t2 - t1
    totalLat[i] = t2 - t0
  }
  fs.closeSync(fd)
  const s = Float64Array.from(syncLat).sort()
  const mean = syncLat.reduce((a, b) => a + b, 0) / iterations
  return {
    iterations,
    syncP50Ms: percentile(s, 0.5),
    syncP99Ms: percentile(s, 0.99),
    syncMeanMs: mean,
    syncsPerSec: 1000 / mean,
    ...latencyStats(totalLat, 'writeSync'),
  }
}

// --- F: followers while the writer runs workload A -----------------------------------

const wallNow = () => performance.timeOrigin + performance.now() // comparable across processes

/**
 * The writer appends durable batches of 100 (workload A); a follower in this process
 * ('*-in-process') or in another one ('*-other-process', a readOnly handle) follows with
 * followBatches. Latency: append resolved -> the batch yielded to the follower (0 when the
 * follower had it first: it is woken before the append's promise settles). Then both sit
 * idle for IDLE_MS while the follower's CPU time is measured.
 */
async function workloadF({ variant, dir, records }) {
  const BATCH = 100
  const IDLE_MS = 2000
  const batches = Math.max(1, Math.round(records / BATCH))
  const [backend, where] = [variant.split('-')[0], variant.slice(variant.indexOf('-') + 1)]
  const wal = await WriteAheadLog.open(dir, { backend, sync: 'always' })
  const resolvedAt = new Float64Array(batches)
  const yieldedAt = new Float64Array(batches)
  let followed = 0
  let maxLag = 0
  let follower
  let child
  if (where === 'in-process') {
    follower = (async () => {
      for await (const b of wal.followBatches({ from: 1 })) {
        yieldedAt[(b.first - 1) / BATCH] = wallNow()
        if (++followed === batches) break
      }
    })()
  } else {
    child = spawn(process.execPath, [join(here, 'follower.mjs'), JSON.stringify({ dir, backend, batches, idleMs: IDLE_MS })], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    follower = new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`follower exited ${code}`)))))
    await new Promise((resolve) => child.once('message', resolve)) // it is open and waiting for the first batch
  }
  let i = 0
  const t0 = now()
  const wall0 = wallNow()
  for (let b = 0; b < batches; b++) {
    const ops = new Array(BATCH)
    for (let j = 0; j < BATCH; j++, i++) ops[j] = { type: 'put', key: keys[i & MASK], value: values[i & MASK] }
    await wal.appendBatch(ops)
    resolvedAt[b] = wallNow()
    if (where === 'in-process') maxLag = Math.max(maxLag, (b + 1 - followed) * BATCH)
  }
  const writerSec = (now() - t0) / 1000
  let idleCpuPct
  let followedPerSec
  if (where === 'in-process') {
    await follower
    followedPerSec = (batches * BATCH) / ((Math.max(...yieldedAt) - wall0) / 1000)
    // Idle: a follower waiting, the writer idle.
    const idle = wal.follow({ from: wal.lastLsn + 1 })
    const pending = idle.next()
    await new Promise((r) => setTimeout(r, 500)) // let the run's deferred work (GC, compilation) finish
    const c0 = process.cpuUsage()
    const w0 = now()
    await new Promise((r) => setTimeout(r, IDLE_MS))
    const c = process.cpuUsage(c0)
    idleCpuPct = ((c.user + c.system) / 1000 / (now() - w0)) * 100
    await wal.close()
    await pending
  } else {
    const r = await follower
    for (let b = 0; b < batches; b++) yieldedAt[b] = r.yieldedAt[b]
    idleCpuPct = r.idleCpuPct
    followedPerSec = r.entriesPerSec
    maxLag = 0
    for (let b = 0; b < batches; b++) {
      // Batches the writer had acknowledged but the follower not yet yielded, when batch b was acknowledged.
      let behind = 0
      for (let k = 0; k <= b; k++) if (yieldedAt[k] > resolvedAt[b]) behind++
      if (b % 16 === 0 || b === batches - 1) maxLag = Math.max(maxLag, behind * BATCH)
    }
    await wal.close()
  }
  const lat = new Float64Array(batches)
  for (let b = 0; b < batches; b++) lat[b] = Math.max(0, yieldedAt[b] - resolvedAt[b])
  return { records: batches * BATCH, writerRecordsPerSec: (batches * BATCH) / writerSec, followedPerSec, ...latencyStats(lat, 'follow'), maxLagEntries: maxLag, idleCpuPct }
}

// --- J: shipping into NATS JetStream ---------------------------------------------------

/** Starts nats-server (JetStream, a temp store) on a free loopback port; resolves with { url, stop }. */
async function natsServer(dir) {
  const bin = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => fs.existsSync(p))
  if (!bin) throw new Error('nats-server is not installed (apt-get install -y nats-server)')
  const net = await import('node:net')
  const port = await new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = srv.address().port
      srv.close(() => resolve(p))
    })
  })
  const store = join(dir, 'nats-store')
  fs.mkdirSync(store, { recursive: true })
  const child = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', store], { stdio: ['ignore', 'ignore', 'pipe'] })
  await new Promise((resolve, reject) => {
    let log = ''
    child.stderr.on('data', (d) => {
      log += d
      if (log.includes('Server is ready')) resolve()
    })
    child.on('exit', (c) => reject(new Error(`nats-server exited ${c}: ${log}`)))
  })
  child.stderr.resume()
  return { url: `nats://127.0.0.1:${port}`, stop: () => new Promise((r) => (child.once('exit', r), child.kill('SIGTERM'))) }
}

/**
 * 'ship': a backlog of batches of 100 records is shipped by an in-process shipper
 * (batches/s and MB/s: shipper start -> last stream acknowledgement); then durable batches
 * appended one at a time give the latency: append durable -> stream acknowledged.
 * 'bare': the same bodies published by a bare @nats-io/jetstream loop with the same
 * pipelining (64 in flight) and a Nats-Msg-Id each, no log: the ceiling.
 */
async function workloadJ({ variant, dir, records }) {
  const BATCH = 100
  const batches = Math.max(1, Math.round(records / BATCH))
  const server = await natsServer(dir)
  try {
    if (variant === 'bare') {
      const { connect, headers } = require('@nats-io/transport-node')
      const { jetstream, jetstreamManager } = require('@nats-io/jetstream')
      const nc = await connect({ servers: server.url })
      const jsm = await jetstreamManager(nc)
      await jsm.streams.add({ name: 'bench', subjects: ['bare.>'], storage: 'file' })
      const js = jetstream(nc)
      const body = Buffer.alloc(BATCH * (32 + KEY_SIZE + VALUE_SIZE) + 72, 0x5a)
      const lat = new Float64Array(batches)
      const inflight = []
      const t0 = now()
      for (let b = 0; b < batches; b++) {
        const h = headers()
        h.set('Fastwal-First', String(b * BATCH + 1))
        const s = now()
        inflight.push(js.publish('bare.log', body, { msgID: `bench:${b}`, headers: h }).then(() => (lat[b] = now() - s)))
        if (inflight.length >= 64) await inflight.shift()
      }
      await Promise.all(inflight)
      const sec = (now() - t0) / 1000
      await nc.close()
      return { batchesPerSec: batches / sec, mbPerSec: (batches * body.length) / sec / 1e6, ...latencyStats(lat, 'ship') }
    }
    const { shipToJetStream } = await import('../dist/esm/jetstream.mjs')
    const wal = await WriteAheadLog.open(join(dir, 'wal'), { backend: 'native', sync: 'none' })
    // Throughput: a backlog of batches written first (the same bodies as 'bare'), then shipped.
    let i = 0
    for (let b = 0; b < batches; b++) {
      const ops = new Array(BATCH)
      for (let j = 0; j < BATCH; j++, i++) ops[j] = { type: 'put', key: keys[i & MASK], value: values[i & MASK] }
      wal.appendBatchSync(ops)
    }
    await wal.sync()
    const backlog = wal.lastLsn
    let bytes = 0
    let done
    let all = new Promise((r) => (done = r))
    const t0 = now()
    const shipper = await shipToJetStream(wal, { servers: server.url, stream: 'bench' })
    shipper.on('shipped', (last) => {
      if (last === backlog) done()
    })
    await all
    const sec = (now() - t0) / 1000
    for (const f of fs.readdirSync(join(dir, 'wal'))) if (f.endsWith('.wal')) bytes += 0
    bytes = batches * (BATCH * (32 + KEY_SIZE + VALUE_SIZE) + 72)
    // Latency: durable batches appended one at a time while the shipper follows.
    const LIVE = Math.min(500, batches)
    const resolvedAt = new Float64Array(LIVE)
    const shippedAt = new Float64Array(LIVE)
    all = new Promise((r) => (done = r))
    shipper.removeAllListeners('shipped')
    shipper.on('shipped', (last) => {
      const b = (last - backlog) / BATCH - 1
      if (Number.isInteger(b) && b >= 0) shippedAt[b] = now()
      if (last === backlog + LIVE * BATCH) done()
    })
    for (let b = 0; b < LIVE; b++) {
      const ops = new Array(BATCH)
      for (let j = 0; j < BATCH; j++, i++) ops[j] = { type: 'put', key: keys[i & MASK], value: values[i & MASK] }
      await wal.appendBatch(ops)
      await wal.sync()
      resolvedAt[b] = now()
    }
    await all
    await shipper.stop()
    await wal.close()
    const lat = new Float64Array(LIVE)
    for (let b = 0; b < LIVE; b++) lat[b] = Math.max(0, shippedAt[b] - resolvedAt[b])
    return { batchesPerSec: batches / sec, mbPerSec: bytes / sec / 1e6, ...latencyStats(lat, 'ship') }
  } finally {
    await server.stop()
  }
}

// --- O: open time with 1 and many segments -------------------------------------------

async function setupO({ dir, segments, segmentSize, records }) {
  // Records of workload A's shape, written until `segments` segment files exist.
  const perSeg = Math.max(1, Math.floor((segmentSize - 32) / (32 + RAW_RECORD)))
  let i = 0
  for (let round = 0; round < 20; round++) {
    const have = fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.endsWith('.wal')).length : 0
    if (have >= segments && i > 0) break
    const wal = await WriteAheadLog.open(dir, { backend: 'native', sync: 'none', segmentSize })
    const todo = records ?? Math.max(1, (segments - Math.max(have, 1)) * perSeg + Math.floor(perSeg / 2))
    for (let k = 0; k < todo; k++, i++) wal.appendSync({ type: 'put', key: keys[i & MASK], value: values[i & MASK] })
    await wal.close()
  }
  const files = fs.readdirSync(dir).filter((n) => n.endsWith('.wal'))
  return { segments: files.length, records: i, segmentSize }
}

async function workloadO({ variant, dir, segmentSize }) {
  const backend = variant.split('-')[0]
  const t0 = now()
  const wal = await WriteAheadLog.open(dir, { backend, segmentSize })
  const t1 = now()
  const lastLsn = wal.lastLsn
  await wal.close()
  return { openMs: t1 - t0, lastLsn }
}

// --- dispatch ------------------------------------------------------------------------

// --- R: restart: load the library, open a store, read its first entry (fresh process) ------

async function setupR({ dir, bigBytes }) {
  fs.mkdirSync(dir, { recursive: true })
  const small = await WriteAheadLog.open(join(dir, 'small-wal'))
  for (let i = 0; i < 10; i++) await small.append({ type: 'put', key: keys[i], value: values[i] })
  await small.close()
  const Database = require('better-sqlite3')
  const db = new Database(join(dir, 'small.sqlite'))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.exec('CREATE TABLE log (id INTEGER PRIMARY KEY, key BLOB, value BLOB)')
  const ins = db.prepare('INSERT INTO log (key, value) VALUES (?, ?)')
  for (let i = 0; i < 10; i++) ins.run(keys[i], values[i])
  db.close()
  const { open } = require('lmdb')
  const l = open({ path: join(dir, 'small-lmdb'), encoding: 'binary' })
  for (let i = 0; i < 10; i++) await l.put(i + 1, values[i])
  await l.close()
  // The big log: batches of 16 values of 64 KiB, default 64 MiB segments.
  const big = await WriteAheadLog.open(join(dir, 'big-wal'), { backend: 'native', sync: 'none' })
  const v = Buffer.alloc(64 * 1024, 7)
  const batch = Array.from({ length: 16 }, (_, i) => ({ type: 'put', key: keys[i], value: v }))
  let written = 0
  while (written < bigBytes) {
    big.appendBatchSync(batch)
    written += 16 * v.length
  }
  await big.close()
  const segs = fs.readdirSync(join(dir, 'big-wal')).filter((n) => n.endsWith('.wal'))
  return { bigBytes: segs.reduce((s, n) => s + fs.statSync(join(dir, 'big-wal', n)).size, 0), bigSegments: segs.length }
}

function workloadR({ variant, dir }) {
  const [lib, size] = variant.split('-')
  const path = join(dir, size === 'small' ? (lib === 'sqlite' ? 'small.sqlite' : lib === 'lmdb' ? 'small-lmdb' : 'small-wal') : 'big-wal')
  const t0 = now()
  const out = execFileSync(process.execPath, [join(here, 'open-first.mjs'), lib, path], { encoding: 'utf8' })
  const wallMs = now() - t0
  const r = JSON.parse(out.trim().split('\n').pop())
  if (r.first === undefined) throw new Error(`${variant}: no first entry`)
  return { wallMs, sinceStartMs: r.sinceStart, importMs: r.import, openMs: r.open, readMs: r.read, afterImportMs: r.afterImport }
}

// --- L: event-loop delay across 100+ segment rotations ------------------------------------

async function workloadL({ variant, dir, records }) {
  const wal = await WriteAheadLog.open(dir, { backend: variant, segmentSize: 64 * 1024 })
  const value = Buffer.alloc(1000, 7)
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  const t0 = now()
  const inflight = []
  for (let i = 0; i < records; i++) {
    inflight.push(wal.append({ type: 'put', key: keys[i & MASK], value }))
    if (inflight.length >= 64) await Promise.all(inflight.splice(0))
  }
  await Promise.all(inflight)
  const t1 = now()
  h.disable()
  const rotations = fs.readdirSync(dir).filter((n) => n.endsWith('.wal')).length - 1
  await wal.close()
  // The histogram records whole intervals between its 1 ms timer runs: the delay is the excess.
  const delay = (v) => Math.max(0, v / 1e6 - 1)
  return { appendsPerSec: records / ((t1 - t0) / 1000), rotations, eldP50Ms: delay(h.percentile(50)), eldP99Ms: delay(h.percentile(99)), eldMaxMs: delay(h.max), maxOverP99Ms: delay(h.max) - delay(h.percentile(99)) }
}

const handlers = { L: workloadL, A: workloadA, B: workloadB, C: workloadC, D: workloadD, E: workloadE, F: workloadF, J: workloadJ, S: workloadS, O: workloadO, R: workloadR, 'setup-D': setupD, 'setup-O': setupO, 'setup-R': setupR }

const job = JSON.parse(process.argv[2])
try {
  const h = handlers[job.workload]
  if (!h) throw new Error(`unknown workload ${job.workload}`)
  if (job.dir) fs.mkdirSync(job.dir, { recursive: true })
  const result = await h(job)
  process.send({ ok: true, result }, () => process.exit(0))
} catch (err) {
  process.send({ ok: false, error: String(err?.stack ?? err) }, () => process.exit(1))
}
