// The public facade: argument checking, state, and wiring of the writer, replay,
// recovery and lock. Backend-independent: both backends run exactly this code.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, MAX_PAYLOAD, MAX_LSN } from './format.js'
import { jsBackend } from './js-backend.js'
import { acquireLock, type DirLock } from './lock.js'
import { LogWriter, type WriterSegment } from './log-writer.js'
import { loadAddon } from './native-addon.js'
import { nativeBackend } from './native-backend.js'
import { normalizeOp, resolveOptions, type Operation, type Options, type ResolvedOptions } from './options.js'
import { planPointInTime, planTail, runTailAsync, runTailSync, scanCleanTail, type RecoveryReport, type TailPlan } from './recovery.js'
import { replayBatchesAsync, replayEntriesAsync, replayEntriesSync, type Batch, type Entry, type ReplaySource } from './replay.js'
import { isSpareName, createSegment, discardSpare, listSegments, prepareSpare, prepareSpareSync, syncDir, type SegmentRef, type Spare } from './segments.js'

let warnedFallback = false

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
  lastName: string
  validEnd: number
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

function prepare(dir: string, options: Options | undefined): { opts: ResolvedOptions; backend: Backend } {
  const opts = resolveOptions(dir, options)
  const backend = selectBackend(opts.backend)
  return { opts, backend }
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

/** Turns the recovery plan into open files; for writable opens, makes the repair durable. */
function finishOpen(dir: string, backend: Backend, opts: ResolvedOptions, segments: SegmentRef[], plan: TailPlan, lock?: DirLock, spare?: Spare): Opened {
  const base = { backend, opts, checkpointLsn: plan.checkpointLsn, report: plan.report }
  if (opts.readOnly) {
    const gone = new Set([...(plan.dropSegments ?? []), ...(plan.deleteSegment ? [plan.deleteSegment] : [])])
    const segs = segments.filter((s) => !gone.has(s))
    return {
      ...base,
      lastLsn: plan.keptLsn,
      view: { segments: segs, lastName: plan.segment?.name ?? '', validEnd: plan.validEnd },
    }
  }
  try {
    let dirChanged = false
    let lastLsn = Math.max(plan.maxLsn, plan.keptLsn)
    let current: WriterSegment
    if (plan.segment) {
      const path = join(dir, plan.segment.name)
      const fd = fs.openSync(path, 'r+')
      let end = plan.validEnd
      const size = fs.fstatSync(fd).size
      if (plan.validEnd < plan.dataEnd || (!opts.preallocate && size !== plan.validEnd)) {
        fs.ftruncateSync(fd, plan.validEnd)
      }
      if (opts.preallocate && fs.fstatSync(fd).size < opts.segmentSize) fs.ftruncateSync(fd, opts.segmentSize)
      if (plan.maxLsn > plan.keptLsn) {
        // Dropped LSNs are never reused: a CHECKPOINT record whose LSN field is the highest
        // one seen keeps that floor across the next open, even if nothing is appended.
        const rec = Buffer.alloc(RECORD_HEADER_SIZE + 8)
        backend.encodeCheckpoint(rec, 0, plan.maxLsn, plan.keptLsn, plan.checkpointLsn)
        backend.writeSync(fd, rec, 0, rec.length, end)
        end += rec.length
      }
      backend.syncSync(fd)
      current = { name: plan.segment.name, path, firstLsn: plan.segment.firstLsn, prevLsn: plan.prevLsn, fd, end, written: end }
    } else {
      const taken = spare
      spare = undefined // createSegment owns it now, on failure too
      const made = createSegment(dir, backend, lastLsn + 1, { prevLsn: lastLsn, checkpointLsn: plan.checkpointLsn }, opts.preallocate ? opts.segmentSize : 0, taken)
      segments.push({ name: made.name, firstLsn: made.firstLsn })
      current = { ...made, end: SEGMENT_HEADER_SIZE, written: SEGMENT_HEADER_SIZE }
      dirChanged = false
    }
    // Whole segments are removed only after the kept one is repaired and synced, so a crash
    // in between never keeps the removals without the LSN floor.
    for (const doomed of [...(plan.dropSegments ?? []), ...(plan.deleteSegment ? [plan.deleteSegment] : [])]) {
      segments = segments.filter((s) => s !== doomed)
      if (doomed.name === current.name) continue // replaced in place by the new segment
      fs.unlinkSync(join(dir, doomed.name))
      dirChanged = true
    }
    if (dirChanged || plan.report.truncatedBytes > 0) syncDir(dir)
    const durableLsn = plan.maxLsn > plan.keptLsn ? plan.keptLsn : lastLsn
    lastLsn = Math.max(lastLsn, 0)
    const writer = new LogWriter(dir, backend, opts, { segments, current, lastLsn, durableLsn, checkpointLsn: plan.checkpointLsn })
    if (spare) writer.adoptSpare(spare)
    return { ...base, writer, lock, lastLsn }
  } catch (err) {
    if (spare) discardSpare(spare)
    lock?.release()
    if (err instanceof WalError) throw err
    throw ioError(err, 'Opening the log', dir, 'open')
  }
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
    const { opts, backend } = prepare(dir, options)
    const exists = ensureDir(dir, opts)
    const lock = lockDir(dir, exists, opts)
    try {
      const segments = exists ? listSegments(dir) : []
      const last = segments[segments.length - 1]
      // The common case (a clean tail) is read in chunks on the thread pool.
      const fast = last ? await withLastSegment(join(dir, last.name), (fd, size) => runTailAsync(scanCleanTail(last, size, backend, opts.recovery), fd)) : undefined
      const plan = planRecovery(dir, segments, backend, opts.recovery, fast)
      // A new log's first segment is zero-filled on the thread pool before open resolves.
      const spare = lock && !plan.segment && opts.preallocate ? await prepareSpare(dir, backend, opts.segmentSize) : undefined
      return new WriteAheadLog(dir, finishOpen(dir, backend, opts, segments, plan, lock, spare))
    } catch (err) {
      lock?.release()
      throw err instanceof WalError ? err : ioError(err, 'Opening the log', dir, 'open')
    }
  }

  static openSync(dir: string, options?: Options): WriteAheadLog {
    const { opts, backend } = prepare(dir, options)
    const exists = ensureDir(dir, opts)
    const lock = lockDir(dir, exists, opts)
    try {
      const segments = exists ? listSegments(dir) : []
      const last = segments[segments.length - 1]
      const fast = last ? withLastSegment(join(dir, last.name), (fd, size) => runTailSync(scanCleanTail(last, size, backend, opts.recovery), fd)) : undefined
      const plan = planRecovery(dir, segments, backend, opts.recovery, fast)
      const spare = lock && !plan.segment && opts.preallocate ? prepareSpareSync(dir, backend, opts.segmentSize) : undefined
      return new WriteAheadLog(dir, finishOpen(dir, backend, opts, segments, plan, lock, spare))
    } catch (err) {
      lock?.release()
      throw err instanceof WalError ? err : ioError(err, 'Opening the log', dir, 'open')
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
    if (!Array.isArray(ops)) throw new WalError('WAL_INVALID', 'appendBatch(ops): ops must be an array of operations.')
    if (ops.length === 0) throw new WalError('WAL_INVALID', 'appendBatch(ops): a batch needs at least one operation.')
    const n = ops.length
    const types = new Uint8Array(n)
    const keys: Uint8Array[] = new Array(n)
    const values: (Uint8Array | undefined)[] = new Array(n)
    let size = 2 * RECORD_HEADER_SIZE + 8
    for (let i = 0; i < n; i++) {
      const op = normalizeOp(ops[i], this.opts.maxRecordSize, `appendBatch: operation ${i}`)
      types[i] = op.type
      keys[i] = op.key
      values[i] = op.value
      size += RECORD_HEADER_SIZE + op.key.length + (op.value ? op.value.length : 0)
    }
    if (size > MAX_PAYLOAD) throw new WalError('WAL_TOO_LARGE', `appendBatch: the batch encodes to ${size} bytes, over the 2 GiB a batch may take. Split it.`)
    if (w.lastLsn + n > MAX_LSN) throw new WalError('WAL_INVALID', 'appendBatch: LSNs would exceed 2^53 - 1.')
    const first = w.stageBatch(types, keys, values, size)
    return { first, last: first + n - 1 }
  }

  append(op: Operation): Promise<number> {
    try {
      const w = this.writable('append')
      const lsn = w.stageOne(normalizeOp(op, this.opts.maxRecordSize, 'append(op)'))
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
    const lsn = w.stageOne(normalizeOp(op, this.opts.maxRecordSize, 'appendSync(op)'))
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
      segments: () => (w ? w.segments : v!.segments),
      limitFor: (name) => (w ? w.writtenEnd(name) : name === v!.lastName ? v!.validEnd : -1),
    }
  }

  private replayFrom(what: string, opts: { from?: number } | undefined): number {
    if (this.closedFlag) throw new WalError('WAL_CLOSED', `${what}: the WAL in ${this.dir} is closed. Open it again to replay.`)
    if (opts !== undefined && (opts === null || typeof opts !== 'object')) throw new WalError('WAL_INVALID', `${what}(opts): opts must be an object like { from: 1 }.`)
    const from = opts?.from
    if (from === undefined) return this.checkpointLsn + 1
    if (typeof from !== 'number' || !Number.isInteger(from) || from < 0) throw new WalError('WAL_INVALID', `${what}: from must be a non-negative integer LSN; got ${String(from)}.`)
    return from
  }

  /** Entries with lsn >= from (default: after the latest checkpoint), committed batches only. */
  replay(opts?: { from?: number }): AsyncIterableIterator<Entry> {
    const from = this.replayFrom('replay', opts)
    return replayEntriesAsync(this.source(), from, this.writer ? () => this.writer!.flushWrites() : undefined)
  }

  replayBatches(opts?: { from?: number }): AsyncIterableIterator<Batch> {
    const from = this.replayFrom('replayBatches', opts)
    return replayBatchesAsync(this.source(), from, this.writer ? () => this.writer!.flushWrites() : undefined)
  }

  replaySync(opts?: { from?: number }): IterableIterator<Entry> {
    const from = this.replayFrom('replaySync', opts)
    this.writer?.drainSync(false)
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
    // Delete segments whose every record is <= lsn: segment i holds LSNs below segment i+1's first.
    const segs = w.segments
    let removed = 0
    while (segs.length - removed > 1 && segs[removed + 1].firstLsn - 1 <= lsn) removed++
    // Taken out of the list before the first await, so a concurrent checkpoint sees the rest.
    const doomed = segs.splice(0, removed)
    for (const s of doomed) {
      const path = join(this.dir, s.name)
      try {
        await fs.promises.unlink(path)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, 'Deleting a checkpointed segment', path)
      }
    }
    if (removed > 0) syncDir(this.dir)
  }

  // --- close ---------------------------------------------------------------------------

  /** Flushes, syncs and releases the lock. Idempotent; always resolves. */
  close(): Promise<void> {
    if (this.closing) return this.closing
    this.closedFlag = true
    this.closing = (async () => {
      const w = this.writer
      try {
        if (w && !w.failed) await w.syncAll().catch(() => undefined)
        // After a failure a pool write may still be pending: let it land before another
        // writer can take the lock and repair the tail under it.
        if (w) await new Promise<void>((resolve) => w.whenIdle(resolve))
      } finally {
        w?.shutdown()
        this.lock?.release()
      }
    })()
    return this.closing
  }

  closeSync(): void {
    if (this.closing) return
    this.closedFlag = true
    this.closing = Promise.resolve()
    const w = this.writer
    try {
      if (w && !w.failed) {
        try {
          w.drainSync(true)
        } catch {
          // The pending appends were rejected with WAL_IO; close still releases everything.
        }
      }
    } finally {
      w?.shutdown()
      const lock = this.lock
      // Without a failure, drainSync rewrote any in-flight bytes; with one, the lock waits
      // for the pending pool write (see close()).
      if (w?.failed && lock) w.whenIdle(() => lock.release())
      else lock?.release()
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }
}
