// The write path: records are encoded into a staging buffer at call time (one crossing
// into the backend per append or per batch), and staged bytes go to disk as jobs, one at
// a time, each one positional write (+ fdatasync) in a single trip to the thread pool.
// Appends that arrive while a job is in flight share the next job: group commit.
//
// Synchronous calls (appendSync, closeSync, ...) drain everything in order on the calling
// thread. A job already in flight on the pool is written again from the same bytes at the
// same offset (idempotent), so the synchronous fdatasync covers it too.
//
// In the asynchronous path nothing blocks the event loop: segment creation (header write,
// sync, directory sync) and the truncation of a finished segment run on the thread pool
// as the first steps of the job that needs them.
import * as fs from 'node:fs'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, TYPE_PUT } from './format.js'
import type { EncodedOp, ResolvedOptions } from './options.js'
import { createSegment, createSegmentAsync, discardSpare, fsCall, prepareSpare, syncDir, syncDirAsync, type OpenSegment, type SegmentRef, type Spare } from './segments.js'

interface Waiter {
  resolve(value: unknown): void
  reject(err: unknown): void
  value: unknown
  /** The waiter needs its bytes synced, not only written. */
  durable: boolean
}

export interface WriterSegment {
  name: string
  path: string
  firstLsn: number
  prevLsn: number
  fd: number // -1 until the file is created; used by jobs on the thread pool
  /** False while the directory entry of a just-created segment is not yet synced. */
  dirSynced?: boolean
  /**
   * A second open file for the synchronous path (drainSync). Linux reports a writeback
   * error once per open file, so a sync here and a concurrent sync of a pool job on `fd`
   * must not share one: each would risk "succeeding" on the other's behalf.
   */
  syncFd?: number
  end: number // offset after the last record encoded for it (staged included)
  written: number // offset up to which writes have completed
}

interface Job {
  seg: WriterSegment
  buf: Buffer
  len: number
  position: number
  lastLsn: number
  waiters: Waiter[]
  sync: boolean
  truncateTo: number // >= 0: shrink the file to this size first (rotation drops preallocation)
}

const STAGE_INITIAL = 256 * 1024
const WRITE_THRESHOLD = 64 * 1024 // none/interval: start a write once this much is staged
const STAGE_HARD_LIMIT = 4 * 1024 * 1024 // none/interval: past this, write synchronously

export interface WriterState {
  segments: SegmentRef[]
  current: WriterSegment
  lastLsn: number
  durableLsn: number
  checkpointLsn: number
}

export class LogWriter {
  readonly segments: SegmentRef[]
  lastLsn: number
  durableLsn: number
  checkpointLsn: number
  failed: WalError | undefined

  private cur: WriterSegment
  private stage: Job
  private readonly queue: Job[] = []
  private inflight: Job | undefined
  private spareBuf: Buffer | undefined
  private pumpScheduled = false
  private forceSync = false
  private readonly retired: WriterSegment[] = []
  private timer: NodeJS.Timeout | undefined
  private closed = false
  private fileSeg: WriterSegment | undefined // the newest segment with an open fd
  private spare: Spare | undefined // zero-filled file for the next segment
  private sparePending = false

  constructor(
    private readonly dir: string,
    private readonly backend: Backend,
    private readonly opts: ResolvedOptions,
    state: WriterState,
  ) {
    this.segments = state.segments
    this.cur = state.current
    this.lastLsn = state.lastLsn
    this.durableLsn = state.durableLsn
    this.checkpointLsn = state.checkpointLsn
    this.stage = this.newJob(this.cur, this.cur.end, Buffer.allocUnsafe(STAGE_INITIAL))
    if (this.cur.fd >= 0) this.fileSeg = this.cur
    if (opts.sync === 'interval') {
      this.timer = setInterval(() => this.onInterval(), opts.syncIntervalMs)
      this.timer.unref()
    }
  }

  /**
   * Offset up to which `name`'s records have been handed to the OS, or -1 once the
   * segment is finished (read it to its end). A segment the writer has rotated away from
   * stays limited while jobs for it are still queued or in flight.
   */
  writtenEnd(name: string): number {
    if (this.cur.name === name) return this.cur.written
    const busy = this.inflight?.seg.name === name ? this.inflight.seg : this.queue.find((j) => j.seg.name === name)?.seg
    return busy ? busy.written : -1
  }

  // --- appends -------------------------------------------------------------------------

  /** Stages one standalone record; returns its LSN. */
  stageOne(op: EncodedOp): number {
    const size = RECORD_HEADER_SIZE + op.size
    const job = this.reserve(size)
    const lsn = this.lastLsn + 1
    const start = job.len
    const end = this.encode(() => this.backend.encodeRecord(job.buf, start, op.type, lsn, this.durableLsn, op.key, op.type === TYPE_PUT ? op.value : undefined))
    this.commitStaged(job, lsn, start, end, size)
    return lsn
  }

  /** Stages BEGIN, the operations and COMMIT as one contiguous run; returns the first LSN. */
  stageBatch(types: Uint8Array, keys: Uint8Array[], values: (Uint8Array | undefined)[], size: number): number {
    const job = this.reserve(size)
    const first = this.lastLsn + 1
    const start = job.len
    const end = this.encode(() => this.backend.encodeBatch(job.buf, start, types, keys, values, first, this.durableLsn))
    this.commitStaged(job, first + types.length - 1, start, end, size)
    return first
  }

  stageCheckpoint(checkpointLsn: number): void {
    const size = RECORD_HEADER_SIZE + 8
    const job = this.reserve(size)
    const start = job.len
    // A CHECKPOINT carries the current last LSN, so LSN fields never go backwards.
    const end = this.encode(() => this.backend.encodeCheckpoint(job.buf, start, Math.max(this.lastLsn, 1), this.durableLsn, checkpointLsn))
    this.commitStaged(job, this.lastLsn, start, end, size)
    // Later segment headers carry it, so it survives when this segment is deleted.
    this.checkpointLsn = Math.max(this.checkpointLsn, checkpointLsn)
  }

  private encode(fn: () => number): number {
    try {
      return fn()
    } catch (err) {
      throw new WalError('WAL_INVALID', `The operation could not be encoded (${(err as Error).message}); nothing was written.`, { cause: err })
    }
  }

  /**
   * Takes the encoded bytes into the stage. The segment end advances by what the encoder
   * wrote, and that must be the size the rotation decision was made with: otherwise the
   * bytes changed under us, and the record is refused rather than let a segment overflow.
   */
  private commitStaged(job: Job, lastLsn: number, start: number, end: number, size: number): void {
    if (end - start !== size)
      throw new WalError('WAL_INVALID', `The operation's bytes changed size while being written (${size} bytes measured, ${end - start} encoded); nothing was written. Do not resize or transfer buffers passed to append until it returns.`)
    job.len = end
    this.lastLsn = lastLsn
    job.lastLsn = lastLsn
    this.cur.end += end - start
    if (this.cur.end > this.opts.segmentSize / 2 && this.opts.preallocate && !this.spare && !this.sparePending) this.prepareNext()
  }

  /** Zero-fills the next segment's file on the thread pool, well before it is needed. */
  private prepareNext(): void {
    this.sparePending = true
    prepareSpare(this.dir, this.backend, this.opts.segmentSize).then(
      (spare) => {
        this.sparePending = false
        if (this.closed) discardSpare(spare)
        else this.spare = spare
      },
      () => {
        // No spare (e.g. ENOSPC): rotation then creates the segment without zero fill, and
        // a real shortage of space surfaces on the records' own write.
        this.sparePending = false
      },
    )
  }

  /** Adopts a spare made by open (the first segment's zero fill). */
  adoptSpare(spare: Spare): void {
    this.spare = spare
  }

  /** Promise settled when everything staged so far is written and (if durable) synced. */
  waitFor<T>(value: T, durable: boolean): Promise<T> {
    if (!durable) {
      this.scheduleWrite()
      return Promise.resolve(value)
    }
    return new Promise<T>((resolve, reject) => {
      this.stage.waiters.push({ resolve: resolve as (v: unknown) => void, reject, value, durable: true })
      this.schedulePump()
    })
  }

  /** After a synchronous append: make it durable now ('always') or just bound the stage. */
  settleSync(): void {
    if (this.opts.sync === 'always') this.drainSync(true)
    else this.scheduleWrite()
  }

  // --- rotation ------------------------------------------------------------------------

  private reserve(size: number): Job {
    const segEnd = this.cur.end
    if (segEnd > SEGMENT_HEADER_SIZE && segEnd + size > this.opts.segmentSize) this.rotate()
    const job = this.stage
    if (job.len + size > job.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(job.buf.length * 2, job.len + size))
      job.buf.copy(grown, 0, 0, job.len)
      job.buf = grown
    }
    return job
  }

  private rotate(): void {
    // The old segment must be whole and synced before its successor exists (FORMAT.md).
    const old = this.stage
    old.sync = true
    old.truncateTo = this.cur.end
    old.lastLsn = this.lastLsn
    this.queue.push(old)
    // Names strictly increase: a segment that holds only CHECKPOINT records (no LSN taken
    // since it began) is followed by one named one higher, never by one of the same name.
    const firstLsn = Math.max(this.lastLsn + 1, this.cur.firstLsn + 1)
    this.cur = {
      name: '',
      path: '',
      firstLsn,
      prevLsn: this.lastLsn,
      fd: -1,
      end: SEGMENT_HEADER_SIZE,
      written: SEGMENT_HEADER_SIZE,
    }
    this.stage = this.newJob(this.cur, SEGMENT_HEADER_SIZE, this.takeBuffer())
  }

  private segmentHeader(seg: WriterSegment) {
    return { prevLsn: seg.prevLsn, checkpointLsn: Math.min(this.checkpointLsn, seg.prevLsn) }
  }

  /** Creates seg's file on this thread (the synchronous path), or finishes its creation. */
  private ensureCreatedSync(seg: WriterSegment): void {
    if (seg.fd >= 0) {
      if (seg.dirSynced === false) {
        syncDir(this.dir)
        seg.dirSynced = true
      }
      return
    }
    const spare = this.spare
    this.spare = undefined
    this.adopt(seg, createSegment(this.dir, this.backend, seg.firstLsn, this.segmentHeader(seg), this.opts.preallocate ? this.opts.segmentSize : 0, spare))
    seg.dirSynced = true
  }

  /** Creates seg's file on the thread pool; the synchronous path may take over meanwhile. */
  private async ensureCreatedAsync(seg: WriterSegment): Promise<void> {
    if (seg.fd < 0) {
      const spare = this.spare
      this.spare = undefined
      const made = await createSegmentAsync(this.dir, this.backend, seg.firstLsn, this.segmentHeader(seg), this.opts.preallocate ? this.opts.segmentSize : 0, spare, () => seg.fd >= 0)
      if (made) {
        this.adopt(seg, made)
        seg.dirSynced = false
      }
    }
    if (seg.dirSynced === false) {
      await syncDirAsync(this.dir)
      seg.dirSynced = true
    }
  }

  private adopt(seg: WriterSegment, made: OpenSegment): void {
    if (this.segments.some((s) => s.name === made.name)) {
      fs.closeSync(made.fd)
      throw new WalError('WAL_CORRUPT', `The writer created segment ${made.name} in ${this.dir} twice; it stopped rather than overwrite it. Please report this.`, { segment: made.name, offset: 0 })
    }
    seg.fd = made.fd
    seg.name = made.name
    seg.path = made.path
    this.segments.push({ name: made.name, firstLsn: seg.firstLsn })
    if (this.closed) {
      this.retired.push(seg) // closed while the pool created it: closed once its job ends
      return
    }
    if (this.fileSeg) this.retired.push(this.fileSeg)
    this.fileSeg = seg
  }

  // --- the job pipeline --------------------------------------------------------------

  private newJob(seg: WriterSegment, position: number, buf: Buffer): Job {
    return { seg, buf, len: 0, position, lastLsn: this.lastLsn, waiters: [], sync: false, truncateTo: -1 }
  }

  private takeBuffer(): Buffer {
    const b = this.spareBuf ?? Buffer.allocUnsafe(STAGE_INITIAL)
    this.spareBuf = undefined
    return b
  }

  private sealStage(): Job {
    const job = this.stage
    job.lastLsn = this.lastLsn
    if (this.forceSync || job.waiters.some((w) => w.durable)) job.sync = true
    this.forceSync = false
    this.stage = this.newJob(this.cur, job.position + job.len, this.takeBuffer())
    return job
  }

  private stageBusy(): boolean {
    return this.stage.len > 0 || this.stage.waiters.length > 0 || this.forceSync
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.inflight) return
    this.pumpScheduled = true
    queueMicrotask(() => this.pump())
  }

  private scheduleWrite(): void {
    if (this.stage.len >= STAGE_HARD_LIMIT && this.inflight) {
      this.drainSync(false)
    } else if (this.stage.len >= WRITE_THRESHOLD && !this.inflight) {
      this.pump()
    } else if (!this.pumpScheduled && !this.inflight) {
      this.pumpScheduled = true
      setImmediate(() => this.pump())
    }
  }

  private pump(): void {
    this.pumpScheduled = false
    if (this.inflight || this.failed) return
    const job = this.queue.length > 0 ? this.queue.shift()! : this.stageBusy() ? this.sealStage() : undefined
    if (!job) return
    this.inflight = job
    this.runJob(job).then(
      () => this.complete(job),
      (err) => {
        if (this.inflight === job) this.inflight = undefined
        this.fail(err, job.seg)
        this.rejectJob(job)
        this.closeRetired()
        this.notifyIdle()
      },
    )
  }

  /** One job on the thread pool: create its segment if new, shrink a finished one, write (+ sync). */
  private async runJob(job: Job): Promise<void> {
    await this.ensureCreatedAsync(job.seg)
    if (job.truncateTo >= 0) {
      const fd = job.seg.fd
      await fsCall<void>((cb) => fs.ftruncate(fd, job.truncateTo, cb))
    }
    await this.backend.write(job.seg.fd, job.buf, 0, job.len, job.position, job.sync)
  }

  private complete(job: Job): void {
    this.inflight = undefined
    if (this.failed) {
      // A sync on another path failed meanwhile: this job's own success proves nothing
      // (Linux reports a writeback error once per open file), so it is not acknowledged.
      this.rejectJob(job)
      this.closeRetired()
      this.notifyIdle()
      return
    }
    this.recordDone(job)
    this.closeRetired()
    // Start the next group's write+sync before settling this group's promises: the
    // callers' continuations (which stage the group after next) then run while the disk
    // works, instead of before it. Jobs still run one at a time, in order.
    if (!this.closed && !this.failed && (this.queue.length > 0 || this.stageBusy())) this.pump()
    this.settle(job)
    this.notifyIdle()
  }

  private readonly idleWaiters: (() => void)[] = []

  /** Calls cb once no job is on the thread pool (at once if none is). */
  whenIdle(cb: () => void): void {
    if (!this.inflight) cb()
    else this.idleWaiters.push(cb)
  }

  private notifyIdle(): void {
    if (this.inflight) return
    for (const cb of this.idleWaiters.splice(0)) cb()
  }

  private finishJob(job: Job): void {
    this.recordDone(job)
    this.settle(job)
  }

  private recordDone(job: Job): void {
    job.seg.written = Math.max(job.seg.written, job.position + job.len)
    if (job.sync) this.durableLsn = Math.max(this.durableLsn, job.lastLsn)
    if (!this.spareBuf || this.spareBuf.length < job.buf.length) this.spareBuf = job.buf
  }

  private settle(job: Job): void {
    const waiters = job.waiters
    job.waiters = []
    for (const w of waiters) w.resolve(w.value)
  }

  private syncFdOf(seg: WriterSegment): number {
    if (seg.syncFd === undefined) seg.syncFd = fs.openSync(seg.path, 'r+')
    return seg.syncFd
  }

  /**
   * Writes everything staged or queued, in order, on this thread; with `sync`, ends with
   * an fdatasync so every LSN so far is durable.
   */
  drainSync(sync: boolean): void {
    if (this.failed) throw this.failedError()
    const jobs: Job[] = []
    let seg: WriterSegment | undefined
    try {
      const inflight = this.inflight
      if (inflight) {
        this.ensureCreatedSync(inflight.seg)
        const fd = this.syncFdOf(inflight.seg)
        if (inflight.truncateTo >= 0) fs.ftruncateSync(fd, inflight.truncateTo)
        this.backend.writeSync(fd, inflight.buf, 0, inflight.len, inflight.position)
        if (inflight.sync) this.backend.syncSync(fd)
        // Written now: a reader may read up to here (the pool job only repeats it).
        inflight.seg.written = Math.max(inflight.seg.written, inflight.position + inflight.len)
        seg = inflight.seg
      }
      while (this.queue.length > 0 || this.stageBusy()) {
        const job = this.queue.length > 0 ? this.queue.shift()! : this.sealStage()
        jobs.push(job)
        if (seg && seg !== job.seg && seg.fd >= 0) this.backend.syncSync(this.syncFdOf(seg)) // before the successor exists
        this.ensureCreatedSync(job.seg)
        const fd = this.syncFdOf(job.seg)
        if (job.truncateTo >= 0) fs.ftruncateSync(fd, job.truncateTo)
        this.backend.writeSync(fd, job.buf, 0, job.len, job.position)
        if (job.sync) this.backend.syncSync(fd)
        seg = job.seg
      }
      if (sync && this.cur.fd >= 0) this.backend.syncSync(this.syncFdOf(this.cur))
    } catch (err) {
      this.fail(err, seg ?? this.cur)
      for (const job of jobs) this.rejectJob(job)
      throw this.failed
    }
    if (sync) this.durableLsn = Math.max(this.durableLsn, this.lastLsn)
    for (const job of jobs) this.finishJob(job)
    this.closeRetired()
  }

  /** Resolves when every LSN appended so far is durable. */
  syncAll(): Promise<void> {
    if (this.failed) return Promise.reject(this.failedError())
    if (this.durableLsn >= this.lastLsn && !this.inflight && this.queue.length === 0 && this.stage.len === 0) return Promise.resolve()
    this.forceSync = true
    return this.waitFor(undefined, true)
  }

  /**
   * Resolves when everything staged so far has been handed to the OS. It neither syncs
   * nor fails: a reader calls it, and after a write failure reads what is on disk.
   */
  flushWrites(): Promise<void> {
    if (this.failed || this.closed || (!this.inflight && this.queue.length === 0 && this.stage.len === 0)) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const done = () => resolve()
      this.stage.waiters.push({ resolve: done, reject: done, value: undefined, durable: false })
      this.schedulePump()
    })
  }

  private onInterval(): void {
    if (this.failed || this.closed) return
    if (this.durableLsn < this.lastLsn) {
      this.forceSync = true
      this.schedulePump()
    }
  }

  // --- failure -------------------------------------------------------------------------

  failedError(): WalError {
    return new WalError(
      'WAL_FAILED',
      `The WAL in ${this.dir} stopped accepting appends after an I/O error (${this.failed?.message ?? 'unknown'}). Close it and reopen: recovery keeps every acknowledged record.`,
      { cause: this.failed },
    )
  }

  private fail(err: unknown, seg: WriterSegment): void {
    if (this.failed) return
    this.failed = err instanceof WalError ? err : ioError(err, 'Writing the log', seg.path || this.dir, 'write')
    // Every pending promise learns of the failure; nothing queued will be written.
    for (const job of this.queue) this.rejectJob(job)
    this.queue.length = 0
    this.rejectJob(this.stage)
    this.stage.len = 0
    if (this.inflight) this.rejectJob(this.inflight)
  }

  private rejectJob(job: Job): void {
    const err = this.failed!
    for (const w of job.waiters) w.reject(err)
    job.waiters = []
  }

  // --- close ---------------------------------------------------------------------------

  /** Closes fds of segments that are no longer written to, unless a pool job still uses one. */
  private closeRetired(): void {
    for (let i = this.retired.length - 1; i >= 0; i--) {
      const s = this.retired[i]
      if (this.inflight?.seg === s) continue
      this.retired.splice(i, 1)
      if (s.fd >= 0) fs.closeSync(s.fd)
      if (s.syncFd !== undefined) fs.closeSync(s.syncFd)
      s.fd = -2
      s.syncFd = undefined
    }
  }

  /** Releases file descriptors; an in-flight pool job keeps its fd until it finishes. */
  shutdown(): void {
    if (this.closed) return
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    if (this.fileSeg) this.retired.push(this.fileSeg)
    this.fileSeg = undefined
    this.closeRetired()
    if (this.spare) discardSpare(this.spare)
    this.spare = undefined
  }
}
