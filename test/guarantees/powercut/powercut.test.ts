// Power-cut test: whatever subset of the bytes written since the last sync of each file
// survives, and whichever directory entries were not yet synced are lost, a default open
// succeeds and replays every append acknowledged under sync: 'always' whole.
//
// A child writer (fixtures/writer.ts) runs once per backend under strace with
// sync: 'always'. sim.ts rebuilds, from the trace, the directory as a power cut could
// leave it at many points of the run (only synced bytes kept for sure, unsynced 4 KiB
// pages kept in random subsets and versions, sizes as synced or as last set, unsynced
// directory entries lost or kept). Every such state must open with default options,
// replay every append acknowledged before the cut whole, show no part of a batch without
// the rest, keep LSNs increasing, and take one more append.
//
// Failing states are copied, untouched, to /tmp/fastwal-powercut-failures/ with an
// info.json (crash point, choices made, acknowledgements, what went wrong) and the trace.
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../../../lib/index.js'
import type { Options } from '../../../lib/index.js'
import { BACKENDS, prng, tmpDir, type BackendName } from '../../helpers/util.js'
import { FAIL_ROOT, decodeHex, requireStrace, runUnderStrace, stateRoot, writeState } from './harness.js'
import { PowerCutModel, type Ack, type CrashState, type Policy } from './sim.js'

const WRITER = join(__dirname, 'fixtures', 'writer.ts')
const WRITER_SEED: Record<BackendName, number> = { native: 0x5eed1, js: 0x5eed2 }
const WRITER_OPS = 340 // operations the child appends (puts/dels, batches counted per op)
const RANDOM_POINTS = 150 // crash points at random trace lines, besides those near syncs
const RANDOM_SEEDS_MIN = 2 // random crash states per crash point per undecided page or directory operation,
const RANDOM_SEEDS_MAX = 6 // at most this many, besides the states 'lose' and 'keep'
const KEEP_FAILURES = 25 // failing states copied out per backend

interface CallJson {
  kind: string
  first: number
  last: number
  ops: { type: 'put' | 'del'; key: string; value?: string }[]
}
interface WriterOutput {
  backend: string
  lastLsn: number
  calls: CallJson[]
}

interface Run {
  work: string
  walDir: string
  traceFile: string
  out: WriterOutput
  model: PowerCutModel
}

function runWriter(backend: BackendName): Run {
  const work = tmpDir(`powercut-${backend}`)
  const walDir = join(work, 'wal')
  fs.mkdirSync(walDir, { recursive: true }) // the directory itself exists durably before the run
  const ackFile = join(work, 'acks')
  const traceFile = join(work, 'trace.txt')
  const stdout = runUnderStrace(WRITER, [walDir, ackFile, backend, String(WRITER_SEED[backend]), String(WRITER_OPS)], traceFile, 'writer')
  const out = JSON.parse(stdout.trim().split('\n').pop()!) as WriterOutput
  assert.is(out.backend, backend)
  const model = new PowerCutModel(fs.readFileSync(traceFile, 'latin1'), walDir, ackFile, process.cwd())
  return { work, walDir, traceFile, out, model }
}

// --- expectations --------------------------------------------------------------------

class Expect {
  readonly byFirst = new Map<number, CallJson>()
  readonly appends: CallJson[]
  constructor(readonly out: WriterOutput) {
    this.appends = out.calls.filter((c) => c.kind !== 'checkpoint').sort((a, b) => a.first - b.first)
    let prev = 0
    for (const c of this.appends) {
      assert.ok(c.first > prev && c.last >= c.first && c.last - c.first + 1 === c.ops.length, `writer output: bad call ${JSON.stringify(c).slice(0, 100)}`)
      prev = c.last
      this.byFirst.set(c.first, c)
    }
  }

  /** Appends acknowledged by the given markers, and the highest acknowledged checkpoint. */
  acked(acks: Ack[]): { calls: CallJson[]; checkpoint: number; maxLsn: number } {
    const set = new Set<CallJson>()
    let syncedUpTo = 0
    let checkpoint = 0
    for (const a of acks) {
      if (a.kind === 'A') {
        const c = this.byFirst.get(a.first)
        assert.ok(c && c.last === a.last, `ack marker A${a.first}-${a.last} matches no call`)
        set.add(c!)
      } else if (a.kind === 'S') syncedUpTo = Math.max(syncedUpTo, a.first)
      else checkpoint = Math.max(checkpoint, a.first)
    }
    for (const c of this.appends) if (c.last <= syncedUpTo) set.add(c)
    const calls = [...set].sort((a, b) => a.first - b.first)
    return { calls, checkpoint, maxLsn: calls.length ? calls[calls.length - 1].last : 0 }
  }
}

function sameOp(e: { lsn: number; type: string; key: Buffer; value: Buffer | undefined }, op: CallJson['ops'][number]): boolean {
  if (e.type !== op.type || !e.key.equals(Buffer.from(op.key))) return false
  return op.type === 'del' ? e.value === undefined : e.value !== undefined && e.value.equals(Buffer.from(op.value!))
}

function allIn(set: Set<number>, from: number, to: number): boolean {
  for (let l = from; l <= to; l++) if (!set.has(l)) return false
  return true
}

/** What open's recovery did, over the states checked (to show the states are not all clean). */
const stats = { clean: 0, 'torn tail cut': 0, 'records dropped': 0 }

/** Opens a crash state and checks the power-cut promise (top of this file). Returns what is wrong. */
async function checkState(dir: string, st: CrashState, expect: Expect, openOpts: Options | undefined, reopen: boolean): Promise<string[]> {
  const problems: string[] = []
  const { calls: acked, checkpoint: ackedCheckpoint, maxLsn: maxAcked } = expect.acked(st.acks)
  let wal: WriteAheadLog
  try {
    wal = await WriteAheadLog.open(dir, openOpts)
  } catch (err) {
    const e = err as { code?: string; message?: string }
    return [`open failed: ${e.code ?? ''} ${e.message ?? String(err)}`]
  }
  let closed = false
  const r = wal.recovery
  stats[r.droppedEntries + r.droppedBatches > 0 ? 'records dropped' : r.truncatedBytes > 0 ? 'torn tail cut' : 'clean'] += 1
  try {
    const cp = wal.checkpointLsn
    if (cp < ackedCheckpoint) problems.push(`checkpointLsn ${cp} after reopen, but checkpoint(${ackedCheckpoint}) had resolved`)
    const replayed = new Map<number, number>() // first -> last
    let prevLsn = 0
    for await (const b of wal.replayBatches({ from: 0 })) {
      const call = expect.byFirst.get(b.first)
      if (!call || call.last !== b.last || b.entries.length !== call.ops.length) {
        problems.push(`replayed batch ${b.first}..${b.last} (${b.entries.length} entries) is not a whole append of the writer` + (call ? ` (the call was ${call.first}..${call.last})` : ''))
      } else {
        b.entries.forEach((e, i) => {
          if (e.lsn !== b.first + i || !sameOp(e, call.ops[i])) problems.push(`replayed entry ${e.lsn} differs from what was appended at ${b.first + i}`)
        })
      }
      for (const e of b.entries) {
        if (e.lsn <= prevLsn) problems.push(`LSN ${e.lsn} replayed after ${prevLsn}: not strictly increasing`)
        prevLsn = e.lsn
      }
      replayed.set(b.first, b.last)
    }
    for (const c of acked) {
      if (c.last > cp && replayed.get(c.first) !== c.last) problems.push(`acknowledged ${c.kind} ${c.first}..${c.last} is missing after the power cut`)
    }
    if (cp > 0) {
      // The default replay starts after the checkpoint (and may skip whole segments).
      // (replaySync here and below: the async replay was checked above, and is slower.)
      const defaultLsns = new Set<number>()
      for (const e of wal.replaySync()) defaultLsns.add(e.lsn)
      for (const c of acked) {
        if (c.last > cp && !allIn(defaultLsns, Math.max(c.first, cp + 1), c.last))
          problems.push(`acknowledged ${c.kind} ${c.first}..${c.last} is missing from the default replay (from checkpointLsn ${cp} + 1)`)
      }
    }
    if (wal.lastLsn < maxAcked) problems.push(`lastLsn ${wal.lastLsn} is below the acknowledged LSN ${maxAcked}`)
    // The log stays usable: one more append, above every LSN seen.
    const lsn = await wal.append({ type: 'put', key: 'after-power-cut', value: 'x' })
    if (lsn <= maxAcked || lsn <= prevLsn) problems.push(`the append after the power cut got LSN ${lsn}, not above every acknowledged/replayed LSN (${Math.max(maxAcked, prevLsn)})`)
    await wal.close()
    closed = true
    if (!reopen) return problems
    // A clean reopen: the repair and the extra append are durable, nothing acknowledged went.
    const again = await WriteAheadLog.open(dir, openOpts)
    try {
      const seen = new Set<number>()
      let found = false
      for (const e of again.replaySync({ from: 0 })) {
        seen.add(e.lsn)
        if (e.lsn === lsn && e.key.toString() === 'after-power-cut') found = true
      }
      if (!found) problems.push(`the append after the power cut (LSN ${lsn}) is missing after a clean reopen`)
      for (const c of acked) {
        if (c.last > again.checkpointLsn && !allIn(seen, Math.max(c.first, again.checkpointLsn + 1), c.last)) problems.push(`acknowledged ${c.kind} ${c.first}..${c.last} is missing after the second open`)
      }
    } finally {
      await again.close()
    }
  } catch (err) {
    const e = err as { code?: string; message?: string }
    problems.push(`after open: ${e.code ?? ''} ${e.message ?? String(err)}`)
  } finally {
    if (!closed) await wal.close()
  }
  return problems
}

/**
 * How crash state number i is opened. Recovery options are always the defaults
 * (recovery: 'tolerate-tail'). Every DEFAULTS_EVERY-th state is opened with no options at
 * all; the others pass the writer's segmentSize, because with the default 64 MiB open
 * extends the last segment to 64 MiB (and a new log zero-fills a 64 MiB spare), which
 * costs time and changes nothing in recovery. Half of the others are read by the JS
 * backend (the default is the native one), so each backend reads what both wrote.
 */
const DEFAULTS_EVERY = 4
function openOptions(i: number): Options | undefined {
  if (i % DEFAULTS_EVERY === 0) return undefined
  return i % 2 === 1 ? { segmentSize: 8192, backend: 'js' } : { segmentSize: 8192 }
}

function stateKey(st: CrashState): string {
  const h = createHash('sha1')
  h.update(String(st.acks.length))
  for (const [name, data] of st.files) {
    h.update(`\0${name}\0${data.length}\0`)
    h.update(name === 'LOCK' ? '' : data)
  }
  return h.digest('hex')
}

/** Crash points: just before and after every sync, truncate, create and unlink, after every ack, and random lines. */
function crashPoints(model: PowerCutModel, seed: number): number[] {
  const pts = new Set<number>([0, model.endLine])
  for (const m of model.marks) {
    pts.add(m.line)
    pts.add(m.line + 1)
  }
  for (const a of model.acks) pts.add(a.line + 1)
  const lines = model.events.map((e) => e.line)
  const rand = prng(seed)
  for (let i = 0; i < RANDOM_POINTS && lines.length; i++) pts.add(lines[rand() % lines.length] + (rand() & 1))
  return [...pts].filter((l) => l >= 0 && l <= model.endLine).sort((a, b) => a - b)
}

function keepFailure(run: Run, backend: string, st: CrashState, label: string, problems: string[], openOpts: Options | undefined): string {
  const dest = join(FAIL_ROOT, `${backend}-line${st.line}-${label}`)
  fs.rmSync(dest, { recursive: true, force: true })
  fs.mkdirSync(join(dest, 'wal'), { recursive: true })
  for (const [name, data] of st.files) fs.writeFileSync(join(dest, 'wal', name), name === 'LOCK' ? Buffer.alloc(0) : data)
  const trace = fs.readFileSync(run.traceFile, 'latin1').split('\n')
  fs.writeFileSync(
    join(dest, 'info.json'),
    JSON.stringify(
      {
        backend,
        crashBeforeTraceLine: st.line + 1, // 1-based line of trace.txt that did not happen
        openOptions: openOpts ?? 'defaults',
        problems,
        choices: st.notes,
        acksBeforeCrash: st.acks.map((a) => `${a.kind}${a.first}-${a.last}`),
        traceAround: trace.slice(Math.max(0, st.line - 15), st.line + 3).map((l) => decodeHex(l).slice(0, 240)),
      },
      null,
      2,
    ),
  )
  const runCopy = join(FAIL_ROOT, `${backend}-run`)
  if (!fs.existsSync(runCopy)) {
    fs.mkdirSync(runCopy, { recursive: true })
    fs.copyFileSync(run.traceFile, join(runCopy, 'trace.txt'))
    fs.writeFileSync(join(runCopy, 'writer-output.json'), JSON.stringify(run.out))
  }
  return dest
}

// strace is Linux-only: elsewhere (the release workflow's macOS and Windows jobs) the test
// is skipped visibly; on Linux a missing strace fails it with install instructions.
const linuxTest = process.platform === 'linux' ? test : test.skip

for (const backend of BACKENDS) {
  linuxTest(`power cut (${backend} writer): every crash state opens and keeps every acknowledged append whole`, async () => {
    requireStrace()
    const t0 = Date.now()
    if (fs.existsSync(FAIL_ROOT)) {
      for (const d of fs.readdirSync(FAIL_ROOT)) if (d.startsWith(`${backend}-`)) fs.rmSync(join(FAIL_ROOT, d), { recursive: true, force: true })
    }
    const run = runWriter(backend)
    const tRun = Date.now() - t0
    const { model, out } = run
    const expect = new Expect(out)

    // The trace must show what the test relies on; otherwise the model would check nothing.
    assert.ok((model.counts.filesync ?? 0) > 20, `too few fdatasyncs in the trace: ${JSON.stringify(model.counts)}`)
    assert.ok((model.counts.dirsync ?? 0) >= 3, `too few directory fsyncs: ${JSON.stringify(model.counts)}`)
    assert.ok((model.counts['open-creat'] ?? 0) >= 4 && (model.counts['unlink-segment'] ?? 0) >= 1, `expected rotations and a checkpoint deleting segments: ${JSON.stringify(model.counts)}`)
    const aMarks = model.acks.filter((a) => a.kind === 'A').length
    assert.is(aMarks, expect.appends.length, 'every append call left an ack marker in the trace')

    // The model, with every unsynced change kept, must reproduce the real final directory.
    {
      model.advanceTo(model.endLine)
      const st = model.crash(prng(1), 'keep')
      const real = fs.readdirSync(run.walDir).sort()
      assert.equal([...st.files.keys()].sort(), real, 'model directory = real directory')
      for (const name of real) if (name !== 'LOCK') assert.ok(st.files.get(name)!.equals(fs.readFileSync(join(run.walDir, name))), `model content of ${name} = real content`)
    }

    const model2 = new PowerCutModel(fs.readFileSync(run.traceFile, 'latin1'), run.walDir, join(run.work, 'acks'), process.cwd())
    const points = crashPoints(model2, WRITER_SEED[backend])
    const stateDir = join(stateRoot(), `state-${backend}`)
    const seen = new Set<string>()
    const failures: string[] = []
    let checked = 0
    let generated = 0
    for (const line of points) {
      model2.advanceTo(line)
      const variants: [Policy, number][] = [['lose', 0], ['keep', 0]]
      // More random states where more is undecided (identical ones are skipped below).
      const seeds = Math.min(RANDOM_SEEDS_MAX, RANDOM_SEEDS_MIN * model2.undecided())
      for (let s = 1; s <= seeds; s++) variants.push(['random', s])
      for (const [policy, s] of variants) {
        const st = model2.crash(prng((line * 7919 + s * 104729 + WRITER_SEED[backend]) >>> 0), policy)
        generated++
        const key = stateKey(st)
        if (seen.has(key)) continue
        seen.add(key)
        const openOpts = openOptions(checked)
        writeState(stateDir, st)
        // The second, clean open is skipped after a default open (its 64 MiB preallocated
        // last segment makes it slow); the states opened with segmentSize: 8192 get it.
        const problems = await checkState(stateDir, st, expect, openOpts, openOpts !== undefined)
        checked++
        if (problems.length > 0) {
          const label = `${policy}${policy === 'random' ? s : ''}`
          const kept = failures.length < KEEP_FAILURES ? keepFailure(run, backend, st, label, problems, openOpts) : '(not kept)'
          failures.push(`crash before trace line ${line + 1} [${label}] -> ${kept}\n    ${problems.slice(0, 4).join('\n    ')}`)
        }
      }
    }
    const recoveries = JSON.stringify(stats)
    for (const k of Object.keys(stats) as (keyof typeof stats)[]) stats[k] = 0
    const secs = `${((Date.now() - t0) / 1000).toFixed(1)} s (writer under strace ${(tRun / 1000).toFixed(1)} s)`
    console.log(
      `  power cut (${backend}): ${out.calls.length} calls, LSNs 1..${out.lastLsn}, ${model.syscalls.length} syscalls traced ` +
        `(${JSON.stringify(model.counts)}); ${points.length} crash points, ${generated} states generated, ${checked} distinct states checked ` +
        `(${Math.ceil(checked / DEFAULTS_EVERY)} opened with default options), ` +
        `${failures.length} failing; recovery on open: ${recoveries}; ${secs}`,
    )
    if (failures.length > 0) {
      assert.unreachable(`${failures.length} of ${checked} power-cut states break the power-cut promise (kept under ${FAIL_ROOT}):\n  ${failures.slice(0, 10).join('\n  ')}`)
    }
  })
}

test.run()
