// The writer: assigns LSNs and encodes each append into the stage (one call into the
// backend per append or per batch), rotating to a new segment when a record would not
// fit, and hands the bytes to the commit queue. Its parts:
//   stage.ts          the staging buffer
//   commit-queue.ts   writes and fdatasyncs, group commit, the blocking path, failure
//   writer-segments.ts  segment creation, preallocation, descriptors
import type { Backend } from './backend.js'
import type { DurablePublisher } from './durable-file.js'
import { CommitQueue } from './commit-queue.js'
import { WalError } from './errors.js'
import { RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, TYPE_PUT } from './format.js'
import type { EncodedOp, ResolvedOptions } from './options.js'
import { WriterSegments, type WriterSegment } from './writer-segments.js'
import type { SegmentRef, Spare } from './segments.js'
import { Stage, type PendingWrite } from './stage.js'
import { WriterCounters } from './stats.js'

/** Where a writer starts: what open (and repair) left on disk. */
export interface WriterState {
  segments: SegmentRef[]
  current: WriterSegment
  lastLsn: number
  durableLsn: number
  checkpointLsn: number
  /** A zero-filled file for the next segment, made by open. */
  spare?: Spare
}

export class LogWriter {
  /** Highest checkpoint recorded; later segment headers carry it. */
  checkpointLsn: number
  private readonly files: WriterSegments
  private readonly stage: Stage
  private readonly queue: CommitQueue
  private closed = false
  readonly counters = new WriterCounters()

  /** Called each time durableLsn advances; `blocking` on the blocking path. */
  onDurable: (lsn: number, blocking: boolean) => void = () => {}
  /** Whether an in-process follower may read the last writes from memory (see recentBytes). */
  keepRecent: () => boolean = () => false

  constructor(
    dir: string,
    private readonly backend: Backend,
    private readonly opts: ResolvedOptions,
    state: WriterState,
  ) {
    this.checkpointLsn = state.checkpointLsn
    this.files = new WriterSegments(dir, backend, opts, state.segments, state.current, () => this.checkpointLsn, this.counters)
    this.stage = new Stage(state.current, state.current.end, state.lastLsn)
    this.queue = new CommitQueue(dir, backend, opts, this.stage, this.files, state.durableLsn, this.counters, (lsn, blocking) => this.onDurable(lsn, blocking), () => this.keepRecent())
    if (state.spare) this.files.adoptSpare(state.spare)
  }

  /** Where durableLsn is published for other processes (see CommitQueue.publisher). */
  set publisher(p: DurablePublisher | undefined) {
    this.queue.publisher = p
  }

  /** LSN of the last record staged. */
  get lastLsn(): number {
    return this.stage.write.lastLsn
  }

  get durableLsn(): number {
    return this.queue.durableLsn
  }

  get failed(): WalError | undefined {
    return this.queue.failed
  }

  /** The segment appends go into. */
  get currentSegment(): Readonly<WriterSegment> {
    return this.files.current
  }

  /** Segments on disk, oldest first. */
  get segments(): readonly SegmentRef[] {
    return this.files.list
  }

  // --- staging -------------------------------------------------------------------------

  /** Stages one standalone record; returns its LSN. */
  stageOne(op: EncodedOp): number {
    const size = RECORD_HEADER_SIZE + op.size
    const w = this.reserve(size)
    const lsn = this.lastLsn + 1
    const start = w.len
    const end = this.encode(() => this.backend.encodeRecord(w.buf, start, op.type, lsn, this.durableLsn, op.key, op.type === TYPE_PUT ? op.value : undefined))
    this.staged(w, lsn, start, end, size)
    w.ops++
    this.counters.appends++
    return lsn
  }

  /** Stages BEGIN, the operations and COMMIT as one contiguous run; returns the first LSN. */
  stageBatch(types: Uint8Array, keys: Uint8Array[], values: (Uint8Array | undefined)[], size: number): number {
    const w = this.reserve(size)
    const first = this.lastLsn + 1
    const start = w.len
    const end = this.encode(() => this.backend.encodeBatch(w.buf, start, types, keys, values, first, this.durableLsn))
    this.staged(w, first + types.length - 1, start, end, size)
    w.ops++
    this.counters.batches++
    return first
  }

  stageCheckpoint(checkpointLsn: number): void {
    const size = RECORD_HEADER_SIZE + 8
    const w = this.reserve(size)
    const start = w.len
    // A CHECKPOINT carries the current last LSN, so LSN fields never go backwards.
    const end = this.encode(() => this.backend.encodeCheckpoint(w.buf, start, Math.max(this.lastLsn, 1), this.durableLsn, checkpointLsn))
    this.staged(w, this.lastLsn, start, end, size)
    this.checkpointLsn = Math.max(this.checkpointLsn, checkpointLsn)
  }

  private encode(fn: () => number): number {
    try {
      return fn()
    } catch (err) {
      throw new WalError('WAL_INVALID', `The operation could not be encoded (${(err as Error).message}); nothing was written.`, { cause: err })
    }
  }

  /** Room for `size` bytes, in a new segment if the current one cannot take them. */
  private reserve(size: number): PendingWrite {
    const cur = this.files.current
    if (cur.end > SEGMENT_HEADER_SIZE && cur.end + size > this.opts.segmentSize) {
      const end = cur.end
      this.queue.finishSegment(end, this.files.startNext(this.lastLsn))
    }
    return this.stage.reserve(size)
  }

  /**
   * Takes the encoded bytes into the stage. The segment end advances by what the encoder
   * wrote, and that must be the size the rotation decision was made with: otherwise the
   * bytes changed under us, and the record is refused rather than let a segment overflow.
   */
  private staged(w: PendingWrite, lastLsn: number, start: number, end: number, size: number): void {
    if (end - start !== size)
      throw new WalError('WAL_INVALID', `The operation's bytes changed size while being written (${size} bytes measured, ${end - start} encoded); nothing was written. Do not resize or transfer buffers passed to append until it returns.`)
    w.len = end
    w.lastLsn = lastLsn
    this.files.current.end += end - start
    this.files.preallocateIfDue()
  }

  // --- durability ----------------------------------------------------------------------

  /** Promise settled when everything staged so far is written and (if durable) synced. */
  waitFor<T>(value: T, durable: boolean): Promise<T> {
    return this.queue.waitFor(value, durable)
  }

  /** After a blocking append: make it durable now (sync 'always') or just bound the stage. */
  settleBlocking(): void {
    this.queue.settleBlocking()
  }

  /** Writes everything staged on this thread; with `sync`, every LSN so far is durable after. */
  drainBlocking(sync: boolean): void {
    this.queue.drainBlocking(sync)
  }

  /** Resolves when every LSN appended so far is durable. */
  syncAll(): Promise<void> {
    return this.queue.syncAll()
  }

  /** Resolves when everything staged so far is handed to the OS (for readers); never rejects. */
  writeStaged(): Promise<void> {
    return this.closed ? Promise.resolve() : this.queue.writeStaged()
  }

  /** Bytes of a recent write, for an in-process reader (see CommitQueue.recentBytes). */
  recentBytes(name: string, position: number, max: number): Buffer | undefined {
    return this.queue.recentBytes(name, position, max)
  }

  /** Offset of `name` up to which records are written, or -1 once it is finished. */
  writtenEnd(name: string): number {
    return this.queue.writtenEnd(name)
  }

  failedError(): WalError {
    return this.queue.failedError()
  }

  whenIdle(cb: () => void): void {
    this.queue.whenIdle(cb)
  }

  /** Resolves once no zeros are being appended ahead of the records. */
  preallocationSettled(): Promise<void> {
    return this.files.extensionSettled()
  }

  /** Takes out of the writer's list the segments that hold only LSNs up to `lsn`; returns them. */
  deleteThrough(lsn: number): SegmentRef[] {
    return this.files.deleteThrough(lsn)
  }

  /** Releases file descriptors; a write in flight on the pool keeps its fd until it finishes. */
  shutdown(): void {
    if (this.closed) return
    this.closed = true
    this.queue.close()
    this.files.shutdown(this.queue.busySegment)
  }
}
