// The public facade: argument checking, state, and wiring of the writer, replay,
// recovery and lock. Backend-independent: both backends run exactly this code.
import * as fs from 'node:fs'
import { join, resolve } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, MAX_PAYLOAD, MAX_LSN } from './format.js'
import { jsBackend } from './js-backend.js'
import { acquireLock, type DirLock } from './lock.js'
import { LogWriter, type WriterSegment } from './log-writer.js'
import { loadAddon } from './native-addon.js'
import { nativeBackend } from './native-backend.js'
import { normalizeBatch, normalizeOp, resolveOptions, type Operation, type Options, type ResolvedOptions } from './options.js'
import { planPointInTime, planTail, runTailAsync, runTailSync, scanCleanTail, type RecoveryReport, type TailPlan } from './recovery.js'
import { replayBatchesAsync, replayEntriesAsync, replayEntriesSync, type Batch, type Entry, type ReplaySource, type TrackedReader } from './replay.js'
import { findRemnants, hasRemnants, removeRemnants, repairWithNewSegment, type Remnants } from './repair.js'
import { isSpareName, createSegment, discardSpare, fsCall, listSegments, prepareSpare, prepareSpareSync, readPrevLsn, syncDir, syncDirAsync, type SegmentRef, type Spare } from './segments.js'

let warnedFallback = false

/** LSNs are exact JavaScript integers: a call that would pass 2^53 - 1 is refused whole. */
function checkLsnRoom(w: LogWriter, n: number, what: string): void {
  if (w.lastLsn + n > MAX_LSN)
    throw new WalError('WAL_INVALID', `${what}: the log has used LSNs up to ${w.lastLsn}; ${n} more would pass 2^53 - 1, the largest LSN. Start a new log.`)
}

function selectBackend(choice: ResolvedOptions['backend']): Backend {
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

interface ReadOnlyView {
  segments: SegmentRef[]
  /** Bytes known to hold whole records, for segments read only up to a point. */
  limits: Map<string, number>
}

interface Opened {
  backend: Backend
  opts: ResolvedOptions
  writer?: LogWriter
  lock?: DirLock
  view?: ReadOnlyView
  lastLsn: number
  checkpointLsn: number
  report: RecoveryReport
}

function prepare(dir: unknown, options: Options | undefined): { dir: string; opts: ResolvedOptions; backend: Backend } {
  const opts = resolveOptions(dir, options)
  const backend = selectBackend(opts.backend)
  // Resolved once: a later process.chdir() must not move the log.
  return { dir: resolve(dir as string), opts, backend }
}

/** Takes the writer's lock; a spare left by a crash (only zeros) is removed under it. */
function lockDir(dir: string, exists: boolean, opts: ResolvedOptions): DirLock | undefined {
  if (!exists || opts.readOnly) return undefined
  const lock = acquireLock(dir)
  try {
    for (const name of fs.readdirSync(dir)) if (isSpareName(name)) fs.rmSync(join(dir, name), { force: true })
  } catch (err) {
    lock.release()
    throw ioError(err, 'Removing a stale preallocated file', dir, 'open')
  }
  return lock
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

/** Turns the recovery plan into open files; for writable opens, makes the repair durable. */
function finishOpen(dir: string, backend: Backend, opts: ResolvedOptions, segments: SegmentRef[], plan: TailPlan, remnants: Remnants | undefined, lock?: DirLock, spare?: Spare): Opened {
  const base = { backend, opts, checkpointLsn: plan.checkpointLsn, report: plan.report }
  const drop = [...(plan.dropSegments ?? []), ...(plan.deleteSegment ? [plan.deleteSegment] : [])]
  if (opts.readOnly) {
    const gone = new Set([...drop, ...(remnants?.orphans ?? [])])
    const limits = new Map<string, number>()
    if (plan.segment) limits.set(plan.segment.name, plan.validEnd)
    if (remnants?.predecessor) limits.set(remnants.predecessor.name, remnants.cut)
    const last = segments[segments.length - 1]
    return {
      ...base,
      lastLsn: Math.max(plan.keptLsn, last && plan.segment === last && plan.validEnd === SEGMENT_HEADER_SIZE ? last.firstLsn - 1 : 0),
      view: { segments: segments.filter((s) => !gone.has(s)), limits },
    }
  }
  let fd: number | undefined
  try {
    const prealloc = opts.preallocate ? opts.segmentSize : 0
    let current: WriterSegment
    let lastLsn: number
    let durableLsn: number
    if (plan.maxLsn > plan.keptLsn) {
      // LSNs are dropped: their floor becomes durable (as the new segment's name) before
      // the bytes that carried them are removed.
      const taken = spare
      spare = undefined // repairWithNewSegment owns it now, on failure too
      const made = repairWithNewSegment(dir, backend, segments, { kept: plan.segment, validEnd: plan.validEnd, keptLsn: plan.keptLsn, maxLsn: plan.maxLsn, checkpointLsn: plan.checkpointLsn, drop }, prealloc, taken)
      fd = made.fd
      const gone = new Set(drop)
      segments = segments.filter((s) => !gone.has(s))
      segments.push({ name: made.name, firstLsn: made.firstLsn })
      current = { ...made, end: SEGMENT_HEADER_SIZE, written: SEGMENT_HEADER_SIZE, dirSynced: true }
      lastLsn = made.firstLsn - 1
      durableLsn = plan.keptLsn
    } else {
      if (plan.segment) {
        // Cut first, then remove dropped segments: a crash in between leaves a clean log.
        const seg = plan.segment
        const path = join(dir, seg.name)
        fd = fs.openSync(path, 'r+')
        const size = fs.fstatSync(fd).size
        if (plan.validEnd < plan.dataEnd || (!opts.preallocate && size !== plan.validEnd)) fs.ftruncateSync(fd, plan.validEnd)
        if (opts.preallocate && fs.fstatSync(fd).size < opts.segmentSize) fs.ftruncateSync(fd, opts.segmentSize)
        backend.syncSync(fd)
        const empty = plan.validEnd === SEGMENT_HEADER_SIZE
        current = { name: seg.name, path, firstLsn: seg.firstLsn, prevLsn: plan.prevLsn, fd, end: plan.validEnd, written: plan.validEnd, dirSynced: true }
        lastLsn = Math.max(plan.maxLsn, plan.keptLsn, empty ? seg.firstLsn - 1 : 0)
      }
      for (const d of drop) {
        fs.rmSync(join(dir, d.name), { force: true })
        segments = segments.filter((s) => s !== d)
      }
      if (drop.length > 0) syncDir(dir, 'open')
      if (!plan.segment) {
        const taken = spare
        spare = undefined // createSegment owns it now, on failure too
        lastLsn = Math.max(plan.maxLsn, plan.keptLsn)
        const made = createSegment(dir, backend, lastLsn + 1, { prevLsn: lastLsn, checkpointLsn: Math.min(plan.checkpointLsn, lastLsn) }, prealloc, taken)
        fd = made.fd
        segments.push({ name: made.name, firstLsn: made.firstLsn })
        current = { ...made, end: SEGMENT_HEADER_SIZE, written: SEGMENT_HEADER_SIZE, dirSynced: true }
      }
      durableLsn = lastLsn!
    }
    const writer = new LogWriter(dir, backend, opts, { segments, current: current!, lastLsn: lastLsn!, durableLsn, checkpointLsn: plan.checkpointLsn })
    if (spare) writer.adoptSpare(spare)
    return { ...base, writer, lock, lastLsn: lastLsn! }
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd)
    if (spare) discardSpare(spare)
    throw err instanceof WalError ? err : ioError(err, 'Repairing the log at open', dir, 'open')
  }
}

/** Open continues in a new segment: the log is new, or the repair drops LSNs. */
function needsNewSegment(plan: TailPlan): boolean {
  return !plan.segment || plan.maxLsn > plan.keptLsn
}

/**
 * Plans the open. A writable open first finishes a repair that a crash interrupted
 * (its remnants are removed before anything else is judged); a readOnly one reads
 * around them.
 */
function planOpen(dir: string, segments: SegmentRef[], backend: Backend, opts: ResolvedOptions, fast: TailPlan | undefined): { plan: TailPlan; remnants?: Remnants; segs: SegmentRef[] } {
  let plan = planRecovery(dir, segments, backend, opts.recovery, fast)
  const remnants = remnantsOf(dir, segments, plan, backend)
  if (!remnants || opts.readOnly) return { plan, remnants, segs: segments }
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
  const segs = segments.filter((s) => !gone.has(s))
  if (opts.recovery === 'point-in-time') plan = planPointInTime(dir, segs, backend, plan) ?? plan
  return { plan, segs }
}

/** The recovery plan: the streamed clean-tail result if there is one, else the full analysis. */
function planRecovery(dir: string, segments: SegmentRef[], backend: Backend, mode: ResolvedOptions['recovery'], fast: TailPlan | undefined): TailPlan {
  const tail = fast ?? planTail(dir, segments, backend, mode)
  if (mode !== 'point-in-time') return tail
  return planPointInTime(dir, segments, backend, tail) ?? tail
}

/** Runs fn on the last segment opened for reading; closes it when fn (or its promise) is done. */
function withLastSegment<T>(path: string, fn: (fd: number, size: number) => T): T {
  const wrap = (err: unknown) => (err instanceof WalError ? err : ioError(err, 'Reading the last segment', path, 'open'))
  let fd: number
  try {
    fd = fs.openSync(path, 'r')
  } catch (err) {
    throw wrap(err)
  }
  let result: T
  try {
    result = fn(fd, fs.fstatSync(fd).size)
  } catch (err) {
    fs.closeSync(fd)
    throw wrap(err)
  }
  if (!(result instanceof Promise)) {
    fs.closeSync(fd)
    return result
  }
  return result.then(
    (v) => {
      fs.closeSync(fd)
      return v
    },
    (err) => {
      fs.closeSync(fd)
      throw wrap(err)
    },
  ) as T
}

/** Options of replay and replayBatches. */
export interface ReadOptions {
  /** First LSN to yield; default checkpointLsn + 1; 0 for everything retained. */
  from?: number
  /** Aborting it makes the pending and every later next() reject with its reason. */
  signal?: AbortSignal
}

export class WriteAheadLog {
  readonly dir: string
  readonly backend: 'native' | 'js'
  readonly recovery: { mode: string; truncatedBytes: number; droppedEntries: number; droppedBatches: number }

  private readonly impl: Backend
  private readonly opts: ResolvedOptions
  private readonly writer: LogWriter | undefined
  private readonly lock: DirLock | undefined
  private readonly view: ReadOnlyView | undefined
  private readonly readOnlyLastLsn: number
  private readonly readOnlyCheckpointLsn: number
  private cpLsn: number
  private closing: Promise<void> | undefined
  private closedFlag = false
  /** Unfinished iterators of this handle, with the oldest segment each still needs. */
  private readonly readers = new Set<TrackedReader>()
  /** Segments a checkpoint freed that a reader still needs: deleted once it passes them. */
  private readonly doomed: SegmentRef[] = []
  private reaping: Promise<void> = Promise.resolve()
  /** Taken out of view by reap, deletion under way (oldest first). */
  private readonly deleting: SegmentRef[] = []
  /** close() is deleting what readers held back: reap goes on after closedFlag. */
  private finalReap = false
  private readonly prevLsnOf = new Map<string, number>()

  private constructor(dir: string, o: Opened) {
    this.dir = dir
    this.impl = o.backend
    this.backend = o.backend.kind
    this.opts = o.opts
    this.writer = o.writer
    this.lock = o.lock
    this.view = o.view
    this.readOnlyLastLsn = o.lastLsn
    this.readOnlyCheckpointLsn = o.checkpointLsn
    this.cpLsn = o.checkpointLsn
    this.recovery = Object.freeze({ ...o.report })
  }

  /** Opens (creating if needed) the log in `dir`, recovering its tail. */
  static async open(dir: string, options?: Options): Promise<WriteAheadLog> {
    const p = prepare(dir, options)
    const { opts, backend } = p
    const exists = ensureDir(p.dir, opts)
    const lock = lockDir(p.dir, exists, opts)
    try {
      const segments = exists ? listSegments(p.dir) : []
      const last = segments[segments.length - 1]
      // The common case (a clean tail) is read in chunks on the thread pool.
      const fast = last ? await withLastSegment(join(p.dir, last.name), (fd, size) => runTailAsync(scanCleanTail(last, size, backend, opts.recovery), fd)) : undefined
      const { plan, remnants, segs } = planOpen(p.dir, segments, backend, opts, fast)
      // A new segment is zero-filled on the thread pool before open resolves.
      const spare = lock && needsNewSegment(plan) && opts.preallocate ? await prepareSpare(p.dir, backend, opts.segmentSize) : undefined
      return new WriteAheadLog(p.dir, finishOpen(p.dir, backend, opts, segs, plan, remnants, lock, spare))
    } catch (err) {
      lock?.release()
      throw err instanceof WalError ? err : ioError(err, 'Opening the log', p.dir, 'open')
    }
  }

  static openSync(dir: string, options?: Options): WriteAheadLog {
    const p = prepare(dir, options)
    const { opts, backend } = p
    const exists = ensureDir(p.dir, opts)
    const lock = lockDir(p.dir, exists, opts)
    try {
      const segments = exists ? listSegments(p.dir) : []
      const last = segments[segments.length - 1]
      const fast = last ? withLastSegment(join(p.dir, last.name), (fd, size) => runTailSync(scanCleanTail(last, size, backend, opts.recovery), fd)) : undefined
      const { plan, remnants, segs } = planOpen(p.dir, segments, backend, opts, fast)
      const spare = lock && needsNewSegment(plan) && opts.preallocate ? prepareSpareSync(p.dir, backend, opts.segmentSize) : undefined
      return new WriteAheadLog(p.dir, finishOpen(p.dir, backend, opts, segs, plan, remnants, lock, spare))
    } catch (err) {
      lock?.release()
      throw err instanceof WalError ? err : ioError(err, 'Opening the log', p.dir, 'open')
    }
  }

  get lastLsn(): number {
    return this.writer ? this.writer.lastLsn : this.readOnlyLastLsn
  }

  get durableLsn(): number {
    return this.writer ? this.writer.durableLsn : this.readOnlyLastLsn
  }

  get checkpointLsn(): number {
    return this.writer ? this.cpLsn : this.readOnlyCheckpointLsn
  }

  // --- appends -------------------------------------------------------------------------

  private writable(what: string): LogWriter {
    if (this.closedFlag) throw new WalError('WAL_CLOSED', `${what}: the WAL in ${this.dir} is closed. Open it again to continue.`)
    if (!this.writer) throw new WalError('WAL_READ_ONLY', `${what}: the WAL in ${this.dir} was opened with readOnly: true. Open it without readOnly to write.`)
    if (this.writer.failed) throw this.writer.failedError()
    return this.writer
  }

  private stageBatch(w: LogWriter, ops: unknown): { first: number; last: number } {
    const batch = normalizeBatch(ops, this.opts.maxRecordSize)
    const n = batch.length
    const types = new Uint8Array(n)
    const keys: Uint8Array[] = new Array(n)
    const values: (Uint8Array | undefined)[] = new Array(n)
    let size = 2 * RECORD_HEADER_SIZE + 8
    for (let i = 0; i < n; i++) {
      const op = batch[i]
      types[i] = op.type
      keys[i] = op.key
      values[i] = op.value
      size += RECORD_HEADER_SIZE + op.size
    }
    if (size > MAX_PAYLOAD) throw new WalError('WAL_TOO_LARGE', `appendBatch: the batch encodes to ${size} bytes, over the 2 GiB a batch may take. Split it.`)
    checkLsnRoom(w, n, 'appendBatch')
    const first = w.stageBatch(types, keys, values, size)
    return { first, last: first + n - 1 }
  }

  private stageOne(w: LogWriter, op: unknown, what: string): number {
    const e = normalizeOp(op, this.opts.maxRecordSize, `${what}(op)`)
    checkLsnRoom(w, 1, what)
    return w.stageOne(e)
  }

  append(op: Operation): Promise<number> {
    try {
      const w = this.writable('append')
      const lsn = this.stageOne(w, op, 'append')
      return w.waitFor(lsn, this.opts.sync === 'always')
    } catch (err) {
      return Promise.reject(err)
    }
  }

  appendBatch(ops: Operation[]): Promise<{ first: number; last: number }> {
    try {
      const w = this.writable('appendBatch')
      const r = this.stageBatch(w, ops)
      return w.waitFor(r, this.opts.sync === 'always')
    } catch (err) {
      return Promise.reject(err)
    }
  }

  appendSync(op: Operation): number {
    const w = this.writable('appendSync')
    const lsn = this.stageOne(w, op, 'appendSync')
    w.settleSync()
    return lsn
  }

  appendBatchSync(ops: Operation[]): { first: number; last: number } {
    const w = this.writable('appendBatchSync')
    const r = this.stageBatch(w, ops)
    w.settleSync()
    return r
  }

  /** Resolves once everything appended so far is durable. */
  sync(): Promise<void> {
    try {
      return this.writable('sync').syncAll()
    } catch (err) {
      return Promise.reject(err)
    }
  }

  // --- replay --------------------------------------------------------------------------

  private source(): ReplaySource {
    const w = this.writer
    const v = this.view
    return {
      dir: this.dir,
      backend: this.impl,
      // Segments a checkpoint freed stay readable until the readers that need them pass.
      segments: () => (w ? (this.doomed.length > 0 ? [...this.doomed, ...w.segments] : w.segments) : v!.segments),
      limitFor: (name) => (w ? w.writtenEnd(name) : (v!.limits.get(name) ?? -1)),
      checkpointLsn: () => this.checkpointLsn,
      firstLsn: () => this.firstLsn,
      track: (reader) => {
        this.readers.add(reader)
        return () => {
          if (reader.position() === Infinity) this.readers.delete(reader)
          // A closed handle touches nothing more; close() itself deletes what readers held.
          if (this.doomed.length > 0 && !this.closedFlag) this.reap().catch((err) => process.emitWarning(`fastwal: ${(err as Error).message}`, { code: 'FASTWAL_CHECKPOINT_DELETE' }))
        }
      },
    }
  }

  private readOptions(what: string, opts: unknown, allowSignal: boolean): { from: number; signal?: AbortSignal } {
    if (this.closedFlag) throw new WalError('WAL_CLOSED', `${what}: the WAL in ${this.dir} is closed. Open it again to replay.`)
    if (opts === undefined) return { from: this.checkpointLsn + 1 }
    if (opts === null || typeof opts !== 'object') throw new WalError('WAL_INVALID', `${what}(opts): opts must be an object like { from: 1 }.`)
    const known = allowSignal ? ['from', 'signal'] : ['from']
    for (const k of Object.keys(opts)) if (!known.includes(k)) throw new WalError('WAL_INVALID', `${what}(opts): unknown option '${k}'; ${what} takes ${known.map((n) => `'${n}'`).join(' and ')}.`)
    const { from, signal } = opts as { from?: unknown; signal?: unknown }
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new WalError('WAL_INVALID', `${what}(opts): signal must be an AbortSignal; got ${typeof signal}.`)
    if (from === undefined) return { from: this.checkpointLsn + 1, signal }
    if (typeof from !== 'number' || !Number.isInteger(from) || from < 0) throw new WalError('WAL_INVALID', `${what}: from must be a non-negative integer LSN; got ${String(from)}.`)
    return { from, signal }
  }

  /**
   * Lowest LSN replay can still yield: the first retained segment continues after its
   * header's prevLsn. Segments a checkpoint freed count while a reader keeps them.
   */
  get firstLsn(): number {
    const w = this.writer
    const first = w ? (this.doomed[0] ?? w.segments[0]) : this.view?.segments[0]
    const last = this.lastLsn
    if (!first) return last + 1
    let prev = this.prevLsnOf.get(first.name)
    if (prev === undefined) {
      prev = readPrevLsn(this.dir, first, this.impl) ?? first.firstLsn - 1
      this.prevLsnOf.set(first.name, prev)
    }
    return Math.min(prev + 1, last + 1)
  }

  private flushBeforeRead(): (() => Promise<void>) | undefined {
    const w = this.writer
    return w ? () => w.flushWrites() : undefined
  }

  /** Entries with lsn >= from (default: after the latest checkpoint), committed batches only. */
  replay(opts?: ReadOptions): AsyncIterableIterator<Entry> {
    const { from, signal } = this.readOptions('replay', opts, true)
    return replayEntriesAsync(this.source(), from, this.flushBeforeRead(), signal)
  }

  replayBatches(opts?: ReadOptions): AsyncIterableIterator<Batch> {
    const { from, signal } = this.readOptions('replayBatches', opts, true)
    return replayBatchesAsync(this.source(), from, this.flushBeforeRead(), signal)
  }

  replaySync(opts?: { from?: number }): IterableIterator<Entry> {
    const { from } = this.readOptions('replaySync', opts, false)
    if (this.writer && !this.writer.failed) this.writer.drainSync(false)
    return replayEntriesSync(this.source(), from)
  }

  // --- checkpoint ----------------------------------------------------------------------

  async checkpoint(lsn: number): Promise<void> {
    const w = this.writable('checkpoint')
    if (typeof lsn !== 'number' || !Number.isInteger(lsn) || lsn < 0)
      throw new WalError('WAL_INVALID', `checkpoint(lsn): lsn must be a non-negative integer; got ${String(lsn)}.`)
    if (lsn > w.lastLsn)
      throw new WalError('WAL_INVALID', `checkpoint(${lsn}): only LSNs up to lastLsn (${w.lastLsn}) can be checkpointed.`)
    if (lsn <= this.cpLsn) return
    w.stageCheckpoint(lsn)
    await w.syncAll()
    this.cpLsn = Math.max(this.cpLsn, lsn)
    // Closed meanwhile (closeSync made the record durable): a closed handle deletes
    // nothing; a later checkpoint frees these segments again.
    if (this.closedFlag) return
    // Segment i holds only LSNs below segment i+1's name: it is freed when that name - 1 <= lsn.
    const segs = w.segments
    let freed = 0
    while (segs.length - freed > 1 && segs[freed + 1].firstLsn - 1 <= lsn) freed++
    // Out of the writer's list before the first await, so a concurrent checkpoint sees the rest.
    this.doomed.push(...segs.splice(0, freed))
    await this.reap() // after any deletion already under way

  }

  /**
   * Deletes freed segments that no unfinished reader of this handle still needs (those
   * older than every reader's position). One run at a time.
   */
  private reap(): Promise<void> {
    const run = async (): Promise<void> => {
      let min = Infinity
      for (const r of this.readers) min = Math.min(min, r.position())
      // Taken out of view in the same tick as the positions were read: a reader that
      // starts later never lists a segment about to be deleted.
      let k = 0
      while (k < this.doomed.length && this.doomed[k].firstLsn < min) k++
      this.deleting.push(...this.doomed.splice(0, k))
      // Oldest first, each deletion durable before the next: a crash then leaves a log that
      // starts later, never one with a hole in the middle.
      while (this.deleting.length > 0) {
        if (this.closedFlag && !this.finalReap) return // closeSync deleted them itself
        const s = this.deleting[0]
        const path = join(this.dir, s.name)
        this.prevLsnOf.delete(s.name)
        try {
          await fsCall<void>((cb) => fs.unlink(path, cb))
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, 'Deleting a checkpointed segment', path, 'checkpoint')
        }
        await syncDirAsync(this.dir, 'checkpoint')
        if (this.deleting[0] === s) this.deleting.shift()
      }
    }
    // One at a time; a failure is reported to the checkpoint that waits for it.
    const p = this.reaping.then(run, run)
    this.reaping = p.catch(() => undefined)
    return p
  }

  // --- close ---------------------------------------------------------------------------

  /** Ends every reader of this handle: their files close, their next() gives WAL_CLOSED. */
  private closeReaders(): void {
    const err = new WalError('WAL_CLOSED', `The WAL in ${this.dir} was closed while this iterator was reading it. Open it again to read on.`)
    for (const r of [...this.readers]) r.abort(err)
    this.readers.clear()
  }

  /**
   * Flushes, syncs and releases the lock and every file of the handle. Idempotent. Rejects
   * with WAL_IO if its own final write or sync fails (never retried); after an earlier
   * failure it does not sync and resolves.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing
    this.closedFlag = true
    this.closing = (async () => {
      const w = this.writer
      let failure: unknown
      try {
        if (w && !w.failed) await w.syncAll().catch((err) => (failure = err))
        // After a failure a pool write may still be pending: let it land before another
        // writer can take the lock and repair the tail under it.
        if (w) await new Promise<void>((resolve) => w.whenIdle(resolve))
        this.closeReaders()
        // Segments that readers kept from a checkpoint are deleted now, under the lock. A
        // failure leaves them for a later checkpoint; it is not close()'s own write or sync.
        this.finalReap = true
        if (w) await this.reap().catch(() => undefined)
      } finally {
        this.closeReaders()
        w?.shutdown()
        this.lock?.release()
      }
      if (failure !== undefined) throw failure
    })()
    return this.closing
  }

  closeSync(): void {
    if (this.closing) return
    this.closedFlag = true
    const w = this.writer
    let failure: unknown
    try {
      if (w && !w.failed) {
        try {
          w.drainSync(true)
        } catch (err) {
          failure = err // the pending appends were rejected with WAL_IO too
        }
      }
    } finally {
      this.closeReaders()
      if (w) this.reapSync()
      w?.shutdown()
      const lock = this.lock
      // Without a failure, drainSync rewrote any in-flight bytes; with one, the lock waits
      // for the pending pool write (see close()).
      if (w?.failed && lock) w.whenIdle(() => lock.release())
      else lock?.release()
    }
    this.closing = failure === undefined ? Promise.resolve() : Promise.reject(failure)
    this.closing.catch(() => undefined)
    if (failure !== undefined) throw failure
  }

  /**
   * closeSync's reap: deletes, on this thread, every freed segment (readers are closed, so
   * none is needed), including one whose deletion is under way on the thread pool; the
   * pool's run stops at its next step and finds the file gone. Failures leave the files
   * for a later checkpoint.
   */
  private reapSync(): void {
    const rest = [...this.deleting, ...this.doomed]
    this.deleting.length = 0
    this.doomed.length = 0
    for (const s of rest) {
      try {
        fs.rmSync(join(this.dir, s.name), { force: true })
        syncDir(this.dir, 'checkpoint')
      } catch {
        return
      }
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }
}
