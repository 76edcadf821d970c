// Power cuts and SIGKILLs inside the repair that open performs. Whatever state a crash at
// any step of the repair leaves, the next open succeeds (finishing an interrupted repair),
// replays everything it accepts, and never hands out an LSN that was handed out before,
// even when the process died or the power failed in the middle of the repair.
//
// For each backend, four damaged logs are built here (untraced, all files synced):
//  - torn-tail (preallocate false / true): appends under sync 'always' (acknowledged, so
//    durable), then, after a reopen with sync 'none', appends whose LSNs were handed out
//    but never synced (their durable marks stay at the last 'always' LSN). One byte of the
//    third unsynced record is flipped: a torn tail followed by valid records, which a
//    default open must cut while keeping every LSN seen (M, the last unsynced one) unused.
//  - point-in-time (preallocate false / true): four 4 KiB segments of synced appends, one
//    byte flipped in the middle of segment 2. A 'point-in-time' open cuts segment 2 there
//    and removes segments 3 and 4.
// A child (fixtures/repairer.ts) then opens each log once (default recovery for the torn
// tails, 'point-in-time' for the others) and closes it, under strace; one child per backend
// repairs the four logs in turn, and each log's crash states come from its part of the trace. sim.ts, started from
// the pre-repair files (all durable), rebuilds the directory as a power cut at each step of
// that repair could leave it (unsynced pages, sizes and directory entries lost or kept),
// and as a SIGKILL there leaves it (every byte written kept: the 'keep' state at each
// syscall boundary). Each state is then checked:
//  - torn-tail: a default open succeeds; replay from 0 completes, yields only what was
//    appended, and every 'always' append; an append gets an LSN above M, which survives a
//    clean reopen (replay includes it, a second append is above it); and, from the same
//    state again, open, close, open, append also gets an LSN above M.
//  - point-in-time: a default open and a point-in-time open (each from its own copy of the
//    state) each succeed and give a log that replays everything it accepts: three appends
//    (awaited, sync 'always') get LSNs above M; after close and reopen, replay from 0
//    completes without error and yields them, and every record before the damage. The
//    one exception: while the damaged record is still on disk where it was (its header,
//    or what of it the file holds), a default open may report it (WAL_CORRUPT naming
//    segment 2 at or after that record, at open or replay): that is the real corruption
//    in an older segment, which only a point-in-time open removes.
// The preallocated variants are repaired with openSync/closeSync, the others with
// open/close, so both entry points are traced.
//
// Failing states are copied, untouched, to /tmp/fastwal-powercut-failures/repair-* with an
// info.json (crash point, choices made, what went wrong), next to the trace and the
// pre-repair files.
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../../../lib/index.js'
import type { Options } from '../../../lib/index.js'
import { BACKENDS, prng, segmentFiles, tmpDir, type BackendName } from '../../helpers/util.js'
import type { RepairJob, RepairResult } from './fixtures/repairer.js'
import { FAIL_ROOT, decodeHex, requireStrace, runUnderStrace, stateRoot, writeState } from './harness.js'
import { PowerCutModel, type CrashState, type Policy } from './sim.js'

const REPAIRER = join(__dirname, 'fixtures', 'repairer.ts')
const SEED: Record<BackendName, number> = { native: 0x4e9a1, js: 0x4e9a2 }
const RANDOM_SEEDS_MIN = 3 // random power-cut states per crash point per undecided page or directory operation,
const RANDOM_SEEDS_MAX = 12 // at most this many, besides 'lose' and 'keep' (the SIGKILL state)
const KEEP_FAILURES = 12 // failing states copied out per scenario
const DEFAULTS_EVERY = 4 // every 4th state's default-recovery open passes no options at all

type Kind = 'torn-tail' | 'point-in-time'

interface Put {
  key: string
  value: string
}

interface Scenario {
  label: string
  kind: Kind
  backend: BackendName
  segmentSize: number
  preallocate: boolean
  dir: string
  /** The files before the repair (all synced). */
  before: Map<string, Buffer>
  /** Every put ever appended, by LSN (standalone puts only). */
  values: Map<number, Put>
  /** LSNs 1..mustKeep must replay from every state: durable, and before the damage. */
  mustKeep: number
  /** The highest LSN on disk before the repair: handed out, never to be reused. */
  maxLsn: number
  /** The flipped byte, and the header of the record it damaged (at recPos) as it was on disk. */
  damage: { segment: string; offset: number; byte: number; recPos: number; recHeader: Buffer }
  describe: string
}

// --- building the damaged logs ---------------------------------------------------------

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
function text(rand: () => number, n: number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += ALPHABET[rand() % ALPHABET.length]
  return s
}

interface Rec {
  pos: number
  len: number
  type: number
  lsn: number
  mark: number
}

/** The record headers of a segment file (docs/FORMAT.md), read independently of the library. */
function records(buf: Buffer): Rec[] {
  const out: Rec[] = []
  let pos = 32
  while (pos + 32 <= buf.length) {
    const len = buf.readUInt32LE(pos + 4)
    const type = buf[pos + 8]
    const lsn = Number(buf.readBigUInt64LE(pos + 16))
    const mark = Number(buf.readBigUInt64LE(pos + 24))
    if (type === 0 || lsn === 0 || pos + 32 + len > buf.length) break
    out.push({ pos, len, type, lsn, mark })
    pos += 32 + len
  }
  return out
}

function snapshot(dir: string): Map<string, Buffer> {
  return new Map(fs.readdirSync(dir).sort().map((n) => [n, fs.readFileSync(join(dir, n))]))
}

/** Flips one byte in the middle of the payload of the record with LSN `lsn` in `segment`. */
function flip(dir: string, segment: string, lsn: number): { segment: string; offset: number; byte: number; recPos: number; recHeader: Buffer; rec: Rec; recs: Rec[] } {
  const path = join(dir, segment)
  const buf = fs.readFileSync(path)
  const recs = records(buf)
  const rec = recs.find((r) => r.lsn === lsn && r.type === 1)
  if (!rec || rec.len < 2) throw new Error(`setup: no put record with LSN ${lsn} in ${segment}`)
  const offset = rec.pos + 32 + Math.floor(rec.len / 2)
  buf[offset] ^= 0x5a
  fs.writeFileSync(path, buf)
  return { segment, offset, byte: buf[offset], recPos: rec.pos, recHeader: Buffer.from(buf.subarray(rec.pos, rec.pos + 32)), rec, recs }
}

/**
 * Waits until no spare segment file (prealloc-*.tmp) is left in `dir`: a closed writer
 * discards its pending zero-filled spare in the background, after close resolves, and
 * the snapshot of the files before the repair must not race with that.
 */
async function settle(dir: string): Promise<void> {
  const deadline = Date.now() + 10_000
  for (let quiet = 0; quiet < 5; ) {
    if (Date.now() > deadline) throw new Error(`setup: spare files stay in ${dir}: ${fs.readdirSync(dir).join(' ')}`)
    await new Promise((r) => setTimeout(r, 20))
    quiet = fs.readdirSync(dir).some((n) => n.startsWith('prealloc')) ? 0 : quiet + 1
  }
}

async function buildTornTail(backend: BackendName, preallocate: boolean, dir: string, rand: () => number): Promise<Scenario> {
  const segmentSize = 8192
  const values = new Map<number, Put>()
  const put = (prefix: string, len: number): Put => ({ key: `${prefix}${values.size + 1}-${text(rand, rand() % 8)}`, value: text(rand, len) })
  // Synced appends, into a second segment.
  let wal = await WriteAheadLog.open(dir, { sync: 'always', segmentSize, preallocate, backend })
  let extra = 3
  while (segmentFiles(dir).length < 2 || extra-- > 0) {
    const p = put('synced', 100 + (rand() % 300))
    values.set(wal.appendSync({ type: 'put', ...p }), p)
  }
  const synced = wal.lastLsn
  await wal.close()
  // Appends whose LSNs were returned but never synced.
  wal = await WriteAheadLog.open(dir, { sync: 'none', segmentSize, preallocate, backend })
  for (let i = 0; i < 6; i++) {
    const p = put('unsynced', 500 + (rand() % 600)) // together more than a page: the cut spans pages
    values.set(await wal.append({ type: 'put', ...p }), p)
  }
  const maxLsn = wal.lastLsn
  await wal.close()
  await settle(dir)
  const segs = segmentFiles(dir)
  const last = segs[segs.length - 1]
  if (segs.length !== 2) throw new Error(`setup: expected 2 segments (no rotation among the unsynced appends), got ${segs.join(' ')}`)
  // A power cut lost one page of the unsynced appends: the third one is damaged.
  const damaged = synced + 3
  const f = flip(dir, last, damaged)
  const after = f.recs.filter((r) => r.lsn > damaged)
  if (after.length === 0 || after.some((r) => r.mark > damaged - 1) || f.recs[f.recs.length - 1].lsn !== maxLsn)
    throw new Error(`setup: the records after the damage must be valid with marks <= ${damaged - 1}: ${JSON.stringify(f.recs.slice(-6))}`)
  return {
    label: `torn-tail-${preallocate ? 'prealloc' : 'noprealloc'}`,
    kind: 'torn-tail',
    backend,
    segmentSize,
    preallocate,
    dir,
    before: snapshot(dir),
    values,
    mustKeep: synced,
    maxLsn,
    damage: { segment: f.segment, offset: f.offset, byte: f.byte, recPos: f.recPos, recHeader: f.recHeader },
    describe: `LSNs 1..${synced} synced, ${synced + 1}..${maxLsn} unsynced (marks <= ${synced}), byte ${f.offset} of ${last} (LSN ${damaged}) flipped`,
  }
}

async function buildPointInTime(backend: BackendName, preallocate: boolean, dir: string, rand: () => number): Promise<Scenario> {
  const segmentSize = 4096
  const values = new Map<number, Put>()
  const wal = await WriteAheadLog.open(dir, { sync: 'always', segmentSize, preallocate, backend })
  let extra = 4
  while (segmentFiles(dir).length < 4 || extra-- > 0) {
    const p = { key: `k${values.size + 1}-${text(rand, rand() % 8)}`, value: text(rand, 60 + (rand() % 200)) }
    values.set(wal.appendSync({ type: 'put', ...p }), p)
  }
  const maxLsn = wal.lastLsn
  await wal.close()
  await settle(dir)
  const segs = segmentFiles(dir)
  if (segs.length !== 4) throw new Error(`setup: expected 4 segments, got ${segs.join(' ')}`)
  // Damage in the middle of segment 2 of 4.
  const recs = records(fs.readFileSync(join(dir, segs[1])))
  const victim = recs[Math.floor(recs.length / 2)]
  const f = flip(dir, segs[1], victim.lsn)
  return {
    label: `point-in-time-${preallocate ? 'prealloc' : 'noprealloc'}`,
    kind: 'point-in-time',
    backend,
    segmentSize,
    preallocate,
    dir,
    before: snapshot(dir),
    values,
    mustKeep: victim.lsn - 1,
    maxLsn,
    damage: { segment: f.segment, offset: f.offset, byte: f.byte, recPos: f.recPos, recHeader: f.recHeader },
    describe: `LSNs 1..${maxLsn} synced in ${segs.length} segments, byte ${f.offset} of ${segs[1]} (LSN ${victim.lsn}) flipped`,
  }
}

// --- the traced repair, once per backend -------------------------------------------------

interface Run {
  work: string
  traceFile: string
  trace: string
  ackFile: string
  scenarios: Scenario[]
  results: RepairResult[]
  jobsFile: string
}

const runs = new Map<BackendName, Run>()

async function repairRun(backend: BackendName): Promise<Run> {
  const have = runs.get(backend)
  if (have) return have
  const work = tmpDir(`repair-powercut-${backend}`)
  fs.mkdirSync(work, { recursive: true })
  const rand = prng(SEED[backend])
  const scenarios = [
    await buildTornTail(backend, false, join(work, 'torn-noprealloc'), rand),
    await buildTornTail(backend, true, join(work, 'torn-prealloc'), rand),
    await buildPointInTime(backend, false, join(work, 'pit-noprealloc'), rand),
    await buildPointInTime(backend, true, join(work, 'pit-prealloc'), rand),
  ]
  const jobs: RepairJob[] = scenarios.map((sc) => ({
    dir: sc.dir,
    options: { backend, segmentSize: sc.segmentSize, preallocate: sc.preallocate, ...(sc.kind === 'point-in-time' ? { recovery: 'point-in-time' as const } : {}) },
    sync: sc.preallocate,
  }))
  const jobsFile = join(work, 'jobs.json')
  fs.writeFileSync(jobsFile, JSON.stringify(jobs))
  const ackFile = join(work, 'acks')
  const traceFile = join(work, 'trace.txt')
  const stdout = runUnderStrace(REPAIRER, [ackFile, jobsFile], traceFile, 'repairing open')
  const results = JSON.parse(stdout.trim().split('\n').pop()!) as RepairResult[]
  const run: Run = { work, traceFile, trace: fs.readFileSync(traceFile, 'latin1'), ackFile, scenarios, results, jobsFile }
  runs.set(backend, run)
  return run
}

// --- checking one state -------------------------------------------------------------------

interface Err {
  code?: string
  message?: string
  segment?: string
  offset?: number
}
const errText = (err: unknown) => {
  const e = err as Err
  return `${e.code ?? ''} ${e.message ?? String(err)}`.trim()
}

/** Outcomes over the states checked, to show what the repairs did. */
const outcomes: Record<string, number> = {}
const count = (k: string) => (outcomes[k] = (outcomes[k] ?? 0) + 1)

/** Replays from 0; checks order and content. Returns the LSNs seen, or the error that stopped it. */
async function replayAll(wal: WriteAheadLog, sc: Scenario, added: Map<number, Put>, problems: string[], where: string): Promise<{ lsns: Set<number>; max: number; error?: Err }> {
  const lsns = new Set<number>()
  let prev = 0
  let bad = 0
  try {
    for await (const e of wal.replay({ from: 0 })) {
      // (A reused LSN is reported where it was handed out; here it is the new entry.)
      const want = added.get(e.lsn) ?? sc.values.get(e.lsn)
      let what = ''
      if (e.lsn <= prev) what = `LSN ${e.lsn} replayed after ${prev}`
      else if (!want) what = `replayed LSN ${e.lsn} was never appended`
      else if (e.type !== 'put' || e.key.toString() !== want.key || e.value?.toString() !== want.value) what = `replayed entry ${e.lsn} differs from what was appended at that LSN`
      if (what && bad++ < 3) problems.push(`${where}: ${what}`)
      prev = Math.max(prev, e.lsn)
      lsns.add(e.lsn)
    }
  } catch (err) {
    return { lsns, max: prev, error: err as Err }
  }
  return { lsns, max: prev }
}

function missing(lsns: Set<number>, from: number, to: number): string | undefined {
  const gone: number[] = []
  for (let l = from; l <= to; l++) if (!lsns.has(l)) gone.push(l)
  if (gone.length === 0) return undefined
  return `${gone.length} of LSNs ${from}..${to} missing (first ${gone[0]})`
}

/**
 * Whether the damaged record is still on disk where it was (its header, or what of it the
 * file still holds): then the log still has the corruption the repair is removing.
 */
function damagePresent(sc: Scenario, st: CrashState): boolean {
  const f = st.files.get(sc.damage.segment)
  const { recPos, recHeader } = sc.damage
  if (f === undefined || f.length <= recPos) return false
  const n = Math.min(f.length - recPos, recHeader.length)
  return f.subarray(recPos, recPos + n).equals(recHeader.subarray(0, n))
}

let appendCounter = 0
async function appendNew(wal: WriteAheadLog, added: Map<number, Put>): Promise<number> {
  const p = { key: `after-repair-${++appendCounter}`, value: `v${appendCounter}` }
  const lsn = await wal.append({ type: 'put', ...p })
  added.set(lsn, p)
  return lsn
}

async function closeQuietly(wal: WriteAheadLog | undefined): Promise<void> {
  try {
    await wal?.close()
  } catch {
    // reported by the caller's own close, if it got that far
  }
}

/**
 * Open the state, replay, append `appends` entries (each above M), close, reopen, replay
 * again (the new entries included), append once more, close. `mayReportDamage`: a
 * WAL_CORRUPT naming the damaged segment is then accepted (open or replay); the LSN checks
 * still apply to whatever the log accepted.
 */
async function openAppendReopen(dir: string, sc: Scenario, opts: Options | undefined, appends: number, where: string, mayReportDamage: boolean): Promise<string[]> {
  const problems: string[] = []
  const added = new Map<number, Put>()
  const tag = where.replace(/ \(.*\)$/, '') // for the outcome counts: without the reader
  const acceptable = (e: Err | undefined) =>
    mayReportDamage && e?.code === 'WAL_CORRUPT' && e.segment === sc.damage.segment && (e.offset === undefined || e.offset >= sc.damage.recPos)
  let wal: WriteAheadLog | undefined
  try {
    try {
      wal = await WriteAheadLog.open(dir, opts)
    } catch (err) {
      if (acceptable(err as Err)) {
        count(`${tag}: open refused the damage (WAL_CORRUPT)`)
        return problems
      }
      return [`${where}: open failed: ${errText(err)}`]
    }
    const r = wal.recovery
    count(`${tag}: ${r.droppedEntries + r.droppedBatches > 0 ? 'open dropped records' : r.truncatedBytes > 0 ? 'open cut a tail' : 'open found it clean'}`)
    const first = await replayAll(wal, sc, added, problems, `${where}, first replay`)
    let replayedBad = false
    if (first.error) {
      if (acceptable(first.error)) count(`${tag}: replay reported the damage`)
      else problems.push(`${where}: replay from 0 failed: ${errText(first.error)}`)
      replayedBad = true
    } else {
      const gone = missing(first.lsns, 1, sc.mustKeep)
      if (gone) problems.push(`${where}: durable records lost: ${gone}`)
    }
    let lastNew = 0
    for (let k = 0; k < appends; k++) {
      const lsn = await appendNew(wal, added)
      if (lsn <= sc.maxLsn) problems.push(`${where}: an append after the repair got LSN ${lsn}, not above ${sc.maxLsn}, the highest LSN on disk before the repair (LSN reused)`)
      else if (lsn <= first.max) problems.push(`${where}: an append after the repair got LSN ${lsn}, not above the replayed LSN ${first.max}`)
      if (lsn <= lastNew) problems.push(`${where}: appends after the repair got LSNs ${lastNew} then ${lsn}`)
      lastNew = lsn
    }
    await wal.close()
    wal = undefined
    wal = await WriteAheadLog.open(dir, opts)
    const second = await replayAll(wal, sc, added, problems, `${where}, replay after a clean reopen`)
    if (second.error) {
      if (!(acceptable(second.error) && replayedBad)) problems.push(`${where}: after appending ${added.size} entries, close and reopen, replay from 0 failed: ${errText(second.error)}`)
    } else {
      const lost = [...added.keys()].filter((l) => !second.lsns.has(l))
      if (lost.length) problems.push(`${where}: the appends after the repair (LSNs ${[...added.keys()].join(',')}) are missing after a clean reopen: ${lost.join(',')}`)
      const gone = missing(second.lsns, 1, sc.mustKeep)
      if (gone) problems.push(`${where}: durable records lost after a clean reopen: ${gone}`)
    }
    const again = await appendNew(wal, added)
    if (again <= lastNew || again <= sc.maxLsn) problems.push(`${where}: after a clean reopen an append got LSN ${again}, not above ${Math.max(lastNew, sc.maxLsn)}`)
    await wal.close()
    wal = undefined
  } catch (err) {
    problems.push(`${where}: ${errText(err)}`)
  } finally {
    await closeQuietly(wal)
  }
  return problems
}

/** From the state: open, close (nothing appended), open, append: above M. */
async function openCloseOpenAppend(dir: string, sc: Scenario, opts: Options | undefined, where: string): Promise<string[]> {
  let wal: WriteAheadLog | undefined
  try {
    wal = await WriteAheadLog.open(dir, opts)
    await wal.close()
    wal = undefined
    wal = await WriteAheadLog.open(dir, opts)
    const lsn = await appendNew(wal, new Map())
    await wal.close()
    wal = undefined
    if (lsn <= sc.maxLsn) return [`${where}: open, close, open, append got LSN ${lsn}, not above ${sc.maxLsn}, the highest LSN on disk before the repair (LSN reused)`]
    return []
  } catch (err) {
    return [`${where}: ${errText(err)}`]
  } finally {
    await closeQuietly(wal)
  }
}

function defaultOptions(sc: Scenario, i: number): Options | undefined {
  if (i % DEFAULTS_EVERY === 0) return undefined
  return { segmentSize: sc.segmentSize, preallocate: sc.preallocate, backend: i % 2 === 1 ? 'js' : 'native' }
}

async function checkState(dir: string, st: CrashState, sc: Scenario, i: number): Promise<string[]> {
  const problems: string[] = []
  const dflt = defaultOptions(sc, i)
  const dfltName = dflt === undefined ? 'default open (no options)' : `default open (${dflt.backend} reader)`
  if (sc.kind === 'torn-tail') {
    writeState(dir, st)
    problems.push(...(await openAppendReopen(dir, sc, dflt, 2, dfltName, false)))
    writeState(dir, st)
    problems.push(...(await openCloseOpenAppend(dir, sc, dflt, dfltName)))
  } else {
    writeState(dir, st)
    problems.push(...(await openAppendReopen(dir, sc, dflt, 3, dfltName, damagePresent(sc, st))))
    const pit: Options = { segmentSize: sc.segmentSize, preallocate: sc.preallocate, backend: i % 2 === 0 ? 'js' : 'native', recovery: 'point-in-time' }
    writeState(dir, st)
    problems.push(...(await openAppendReopen(dir, sc, pit, 3, `point-in-time open (${pit.backend} reader)`, false)))
  }
  return problems
}

// --- crash points, failures -----------------------------------------------------------------

function stateKey(st: CrashState): string {
  const h = createHash('sha1')
  for (const [name, data] of st.files) {
    h.update(`\0${name}\0${data.length}\0`)
    h.update(name === 'LOCK' ? '' : data)
  }
  return h.digest('hex')
}

function keepFailure(run: Run, sc: Scenario, st: CrashState, label: string, problems: string[]): string {
  const dest = join(FAIL_ROOT, `repair-${sc.backend}-${sc.label}-line${st.line + 1}-${label}`)
  fs.rmSync(dest, { recursive: true, force: true })
  writeState(join(dest, 'wal'), st)
  const trace = run.trace.split('\n')
  fs.writeFileSync(
    join(dest, 'info.json'),
    JSON.stringify(
      {
        backend: sc.backend,
        scenario: sc.label,
        log: sc.describe,
        maxLsnBeforeRepair: sc.maxLsn,
        mustReplay: `1..${sc.mustKeep}`,
        crashBeforeTraceLine: st.line + 1, // 1-based line of trace.txt that did not happen
        state: label,
        problems,
        choices: st.notes,
        traceAround: trace.slice(Math.max(0, st.line - 15), st.line + 3).map((l) => decodeHex(l).slice(0, 240)),
      },
      null,
      2,
    ),
  )
  const runCopy = join(FAIL_ROOT, `repair-${sc.backend}-run`)
  if (!fs.existsSync(join(runCopy, 'trace.txt'))) {
    fs.mkdirSync(runCopy, { recursive: true })
    fs.copyFileSync(run.traceFile, join(runCopy, 'trace.txt'))
    fs.copyFileSync(run.jobsFile, join(runCopy, 'jobs.json'))
    fs.writeFileSync(join(runCopy, 'results.json'), JSON.stringify(run.results, null, 2))
  }
  const before = join(runCopy, `before-${sc.label}`)
  if (!fs.existsSync(before)) writeState(before, { files: sc.before })
  return dest
}

// strace is Linux-only: elsewhere the test is skipped visibly; on Linux a missing strace
// fails it with install instructions.
const linuxTest = process.platform === 'linux' ? test : test.skip

const LABELS = ['torn-tail-noprealloc', 'torn-tail-prealloc', 'point-in-time-noprealloc', 'point-in-time-prealloc']

for (const backend of BACKENDS) {
  for (const [job, label] of LABELS.entries()) {
    linuxTest(`power cut inside open's repair (${backend}, ${label}): every state opens, replays what it accepts, never reuses an LSN`, async () => {
      requireStrace()
      const t0 = Date.now()
      if (fs.existsSync(FAIL_ROOT)) {
        for (const d of fs.readdirSync(FAIL_ROOT)) {
          if (d.startsWith(`repair-${backend}-${label}-`) || (job === 0 && d === `repair-${backend}-run`)) fs.rmSync(join(FAIL_ROOT, d), { recursive: true, force: true })
        }
      }
      const run = await repairRun(backend)
      const sc = run.scenarios[job]
      assert.is(sc.label, label)
      const res = run.results[job]
      assert.is(res.backend, backend)
      // The repair did something: otherwise there would be nothing to crash in.
      assert.ok(res.recovery.droppedEntries > 0, `the traced open dropped no records: ${JSON.stringify(res)}`)

      const model = new PowerCutModel(run.trace, sc.dir, run.ackFile, process.cwd(), sc.before)
      assert.ok(model.marks.length > 0, 'the trace shows the repairing open touching the log')
      // The model, with everything kept, must reproduce the real directory after the child.
      {
        const check = new PowerCutModel(run.trace, sc.dir, run.ackFile, process.cwd(), sc.before)
        check.advanceTo(check.endLine)
        const st = check.crash(prng(1), 'keep')
        const real = fs.readdirSync(sc.dir).sort()
        assert.equal([...st.files.keys()].sort(), real, 'model directory = real directory')
        for (const name of real) if (name !== 'LOCK') assert.ok(st.files.get(name)!.equals(fs.readFileSync(join(sc.dir, name))), `model content of ${name} = real content`)
      }

      // Crash points: before and after every mutating syscall of this directory (open,
      // write, ftruncate, fsync/fdatasync, unlink, rename), from before the first to after the last.
      const pts = new Set<number>([model.endLine])
      for (const m of model.marks) {
        pts.add(m.line)
        pts.add(m.line + 1)
      }
      const points = [...pts].sort((a, b) => a - b)
      const stateDir = join(stateRoot(), `repair-${backend}-${label}`)
      const seen = new Set<string>()
      const failures: string[] = []
      let generated = 0
      let checked = 0
      let sigkill = 0
      for (const k of Object.keys(outcomes)) delete outcomes[k]
      for (const line of points) {
        model.advanceTo(line)
        // 'keep' first: a SIGKILL at this syscall boundary (the page cache survives).
        const variants: [Policy, number][] = [['keep', 0], ['lose', 0]]
        const seeds = Math.min(RANDOM_SEEDS_MAX, RANDOM_SEEDS_MIN * model.undecided())
        for (let s = 1; s <= seeds; s++) variants.push(['random', s])
        for (const [policy, s] of variants) {
          const st = model.crash(prng((line * 7919 + s * 104729 + SEED[backend] + job) >>> 0), policy)
          generated++
          const key = stateKey(st)
          if (seen.has(key)) continue
          seen.add(key)
          if (policy === 'keep') sigkill++
          const problems = await checkState(stateDir, st, sc, checked)
          checked++
          if (problems.length > 0) {
            const name = policy === 'keep' ? 'sigkill' : `${policy}${policy === 'random' ? s : ''}`
            const kept = failures.length < KEEP_FAILURES ? keepFailure(run, sc, st, name, problems) : '(not kept)'
            failures.push(`crash before trace line ${line + 1} [${name}] -> ${kept}\n    ${problems.slice(0, 4).join('\n    ')}`)
          }
        }
      }
      const secs = ((Date.now() - t0) / 1000).toFixed(1)
      console.log(
        `  repair power cut (${backend}, ${label}): ${sc.describe}; traced ${sc.preallocate ? 'openSync' : 'open'}: ${JSON.stringify(res.recovery)}, lastLsn ${res.lastLsn}; ` +
          `${JSON.stringify(model.counts)}; ${points.length} crash points, ${generated} states generated, ${checked} distinct checked ` +
          `(${sigkill} SIGKILL states), ${failures.length} failing; outcomes ${JSON.stringify(outcomes)}; ${secs} s`,
      )
      if (failures.length > 0) {
        assert.unreachable(`${failures.length} of ${checked} states of a crash inside open's repair break these rules (kept under ${FAIL_ROOT}):\n  ${failures.slice(0, 8).join('\n  ')}`)
      }
    })
  }
}

test.run()
