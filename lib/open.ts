// Opening a log: options and backend, the writer's lock, recovery's plan, and either the
// repair that makes it so (writable) or a view around the damage (readOnly).
import * as fs from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { SEGMENT_HEADER_SIZE } from './format.js'
import { jsBackend } from './js-backend.js'
import { acquireLock, type DirLock } from './lock.js'
import { LogWriter } from './log-writer.js'
import { loadAddon } from './native-addon.js'
import { nativeBackend } from './native-backend.js'
import { resolveOptions, type Options, type ResolvedOptions } from './options.js'
import { isCursorTempName } from './cursors.js'
import { DurablePublisher, isDurableTempName } from './durable-file.js'
import { ensureLogId, ensureLogIdAsync, readLogId } from './log-id.js'
import { ReadOnlyView } from './read-only-view.js'
import { channels } from './stats.js'
import { cleanTail, cleanTailBlocking, planPointInTime, planTail, type RecoveryReport, type TailPlan } from './recovery.js'
import { applyRecoveryPlan, findRemnants, firstSegmentHeader, hasRemnants, removeRemnants, type Remnants } from './repair.js'
import {
  createSegmentAsync,
  discardSpare,
  fsCall,
  isSpareName,
  listSegments,
  preallocateStep,
  prepareSpare,
  prepareSpareSync,
  syncDirAsync,
  type OpenSegment,
  type SegmentRef,
  type Spare,
} from './segments.js'

/** An opened log: a writer (and its lock), or a read-only view. */
export interface OpenedLog {
  dir: string
  backend: Backend
  opts: ResolvedOptions
  writer?: LogWriter
  lock?: DirLock
  view?: ReadOnlyView
  /** Publishes the writer's durable LSN for readers in other processes. */
  publisher?: DurablePublisher
  logId: string
  checkpointLsn: number
  report: RecoveryReport
}

let warnedFallback = false

export function selectBackend(choice: ResolvedOptions['backend']): Backend {
  if (choice === 'js') return jsBackend
  const { addon, error } = loadAddon()
  if (addon) return nativeBackend(addon)
  const override = process.env.FASTWAL_NATIVE_DIR
  const why = (error?.message.split('\n')[0] ?? 'unknown reason') + (override ? `; FASTWAL_NATIVE_DIR is set to ${override}` : '')
  if (choice === 'native') {
    throw new WalError(
      'WAL_INVALID',
      `backend: 'native' was requested but the fastwal native addon could not be loaded (${why}). ` +
        "Reinstall to get a prebuilt binary or build from source (`npm rebuild fastwal`, needs a C++ toolchain and python3), or use backend: 'auto' or 'js'.",
      { cause: error },
    )
  }
  if (!warnedFallback) {
    warnedFallback = true
    process.emitWarning(
      `fastwal: native addon unavailable (${why}); using the pure-TypeScript backend, which writes the same format more slowly. ` +
        "Run `npm rebuild fastwal` to build it, or pass backend: 'js' to silence this warning.",
      { code: 'FASTWAL_NATIVE_UNAVAILABLE' },
    )
  }
  return jsBackend
}

interface Prepared {
  dir: string
  opts: ResolvedOptions
  backend: Backend
  lock?: DirLock
  segments: SegmentRef[]
}

/** Options, backend, directory and lock: everything before the segments are read. */
function prepare(dirArg: unknown, options: Options | undefined): Prepared {
  const opts = resolveOptions(dirArg, options)
  const backend = selectBackend(opts.backend)
  // Resolved once: a later process.chdir() must not move the log.
  const dir = resolve(dirArg instanceof URL ? fileURLToPath(dirArg) : (dirArg as string))
  const exists = ensureDir(dir, opts)
  const lock = exists && !opts.readOnly ? lockDir(dir) : undefined
  try {
    return { dir, opts, backend, lock, segments: exists ? listSegments(dir) : [] }
  } catch (err) {
    lock?.release()
    throw err
  }
}

function ensureDir(dir: string, opts: ResolvedOptions): boolean {
  if (opts.readOnly) return fs.existsSync(dir)
  try {
    fs.mkdirSync(dir, { recursive: true })
    return true
  } catch (err) {
    throw ioError(err, 'Creating the WAL directory', dir, 'open')
  }
}

/** Takes the writer's lock; temporary files a crash left (a spare of zeros, a cursor not yet renamed) are removed under it. */
function lockDir(dir: string): DirLock {
  const lock = acquireLock(dir)
  try {
    for (const name of fs.readdirSync(dir))
      if (isSpareName(name) || isCursorTempName(name) || isDurableTempName(name) || /^\.logid-[0-9]+\.tmp$/.test(name)) fs.rmSync(join(dir, name), { force: true })
  } catch (err) {
    lock.release()
    throw ioError(err, 'Removing a stale preallocated file', dir, 'open')
  }
  return lock
}

/**
 * A last segment that holds no record may be the new segment of a repair that a crash
 * interrupted: finish it (writable) or read around its remnants (readOnly).
 */
function remnantsOf(dir: string, segments: SegmentRef[], plan: TailPlan, backend: Backend): Remnants | undefined {
  const last = segments[segments.length - 1]
  if (!last || plan.segment !== last || plan.validEnd !== SEGMENT_HEADER_SIZE || segments.length < 2) return undefined
  const r = findRemnants(dir, segments, plan.prevLsn, backend)
  return hasRemnants(r) ? r : undefined
}

/**
 * Plans the open from the clean-tail result (`clean`, undefined when the tail is damaged
 * or absent). A writable open first finishes a repair that a crash interrupted (its
 * remnants are removed before anything else is judged); a readOnly one reads around them.
 */
function planOpen(p: Prepared, clean: TailPlan | undefined): { plan: TailPlan; remnants?: Remnants; segments: SegmentRef[] } {
  const { dir, segments, backend, opts } = p
  let plan = clean ?? planTail(dir, segments, backend, opts.recovery)
  if (opts.recovery === 'point-in-time') plan = planPointInTime(dir, segments, backend, plan) ?? plan
  const remnants = remnantsOf(dir, segments, plan, backend)
  if (!remnants || opts.readOnly) return { plan, remnants, segments }
  const last = segments[segments.length - 1]
  if (opts.recovery === 'strict')
    throw new WalError(
      'WAL_CORRUPT',
      `A repair of the log in ${dir} was interrupted (segment ${last.name} continues after LSN ${plan.prevLsn}; ${remnants.orphans.length} segment(s) and ${remnants.size - remnants.cut} byte(s) of ${remnants.predecessor?.name ?? 'none'} are left to remove). Nothing was changed. Open with recovery: "tolerate-tail" or "point-in-time" to finish it.`,
      { segment: last.name, offset: 0 },
    )
  removeRemnants(dir, backend, remnants)
  plan = { ...plan, report: { ...plan.report, truncatedBytes: plan.report.truncatedBytes + remnants.droppedBytes, droppedEntries: plan.report.droppedEntries + remnants.droppedEntries, droppedBatches: plan.report.droppedBatches + remnants.droppedBatches } }
  const gone = new Set(remnants.orphans)
  const kept = segments.filter((s) => !gone.has(s))
  if (opts.recovery === 'point-in-time') plan = planPointInTime(dir, kept, backend, plan) ?? plan
  return { plan, segments: kept }
}

/** Open continues in a new segment: the log is new, or the repair drops LSNs. */
function needsNewSegment(plan: TailPlan): boolean {
  return !plan.segment || plan.maxLsn > plan.keptLsn
}

/** What an async open made of a new log on the thread pool: its first segment and its id. */
interface NewLog {
  segment: OpenSegment
  logId: string
}

function finish(p: Prepared, plan: TailPlan, remnants: Remnants | undefined, segments: SegmentRef[], spare: Spare | undefined, tailSynced = false, made?: NewLog): OpenedLog {
  const base = { dir: p.dir, backend: p.backend, opts: p.opts, checkpointLsn: plan.checkpointLsn, report: plan.report }
  const r = plan.report
  if (channels.recovery.hasSubscribers && (r.truncatedBytes > 0 || r.droppedEntries > 0 || r.droppedBatches > 0)) channels.recovery.publish({ dir: p.dir, readOnly: !p.lock, ...r })
  if (!p.lock) return { ...base, logId: readLogId(p.dir), view: new ReadOnlyView(p.dir, p.backend, segments, plan, remnants) }
  const state = applyRecoveryPlan(p.dir, p.backend, p.opts, segments, plan, spare, tailSynced, made?.segment)
  const writer = new LogWriter(p.dir, p.backend, p.opts, state)
  try {
    const logId = made?.logId ?? ensureLogId(p.dir)
    const publisher = new DurablePublisher(p.dir, p.backend, writer.durableLsn)
    return { ...base, lock: p.lock, writer, publisher, logId }
  } catch (err) {
    writer.shutdown()
    throw err
  }
}

function failed(p: Prepared, err: unknown, spare?: Spare): never {
  if (spare) discardSpare(spare)
  p.lock?.release()
  throw err instanceof WalError ? err : ioError(err, 'Opening the log', p.dir, 'open')
}

/** Opens the log; the clean tail is read and a new segment zero-filled on the thread pool. */
export async function openLog(dir: unknown, options: Options | undefined): Promise<OpenedLog> {
  const p = prepare(dir, options)
  try {
    const last = p.segments[p.segments.length - 1]
    const clean = last ? await cleanTail(p.dir, last, p.backend, p.opts.recovery) : undefined
    const { plan, remnants, segments } = planOpen(p, clean)
    let spare = p.lock && needsNewSegment(plan) && p.opts.preallocate ? await prepareSpare(p.dir, p.backend, preallocateStep(p.opts.segmentSize)) : undefined
    // The tail the writer continues in is synced on the thread pool, not on the event loop.
    // (Only without a new segment, so there is no spare to release if it fails.)
    let tailSynced = false
    if (p.lock && plan.segment && !needsNewSegment(plan)) {
      await syncTail(p, plan.segment)
      tailSynced = true
    }
    // A new log: its first segment and its id are made on the thread pool too (each is a
    // write, an fdatasync and a directory sync: milliseconds the event loop would wait).
    let made: NewLog | undefined
    if (p.lock && p.segments.length === 0) {
      const taken = spare
      spare = undefined // createSegmentAsync owns it now, on failure too
      const lastLsn = Math.max(plan.maxLsn, plan.keptLsn) // as applyRecoveryPlan numbers it
      const prealloc = p.opts.preallocate ? preallocateStep(p.opts.segmentSize) : 0
      // Never abandoned, so never undefined.
      const segment = (await createSegmentAsync(p.dir, p.backend, lastLsn + 1, firstSegmentHeader(plan, lastLsn), prealloc, taken, () => false))!
      try {
        await syncDirAsync(p.dir, 'open')
        made = { segment, logId: await ensureLogIdAsync(p.dir, p.backend) }
      } catch (err) {
        fs.closeSync(segment.fd)
        throw err
      }
    }
    return finish(p, plan, remnants, segments, spare, tailSynced, made)
  } catch (err) {
    failed(p, err)
  }
}

async function syncTail(p: Prepared, seg: SegmentRef): Promise<void> {
  const path = join(p.dir, seg.name)
  const fd = await fsCall<number>((cb) => fs.open(path, 'r+', cb))
  try {
    await p.backend.fdatasync(fd)
  } finally {
    await fsCall<void>((cb) => fs.close(fd, cb)) // before the next open can reuse its number
  }
}

/** openLog on the calling thread. */
export function openLogBlocking(dir: unknown, options: Options | undefined): OpenedLog {
  const p = prepare(dir, options)
  try {
    const last = p.segments[p.segments.length - 1]
    const clean = last ? cleanTailBlocking(p.dir, last, p.backend, p.opts.recovery) : undefined
    const { plan, remnants, segments } = planOpen(p, clean)
    const spare = p.lock && needsNewSegment(plan) && p.opts.preallocate ? prepareSpareSync(p.dir, p.backend, preallocateStep(p.opts.segmentSize)) : undefined
    return finish(p, plan, remnants, segments, spare)
  } catch (err) {
    failed(p, err)
  }
}
