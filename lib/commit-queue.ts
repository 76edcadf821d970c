// The commit queue: staged bytes go to disk as PendingWrites, one at a time and in order,
// each one positional write (+ fdatasync) in a single trip to the thread pool. Appends
// that arrive while a write is in flight share the next one: group commit. Nothing here
// blocks the event loop: creating a segment and shrinking a finished one run on the pool
// as the first steps of the write that needs them.
//
// The blocking path (appendSync, closeSync, ...) writes everything queued and staged in
// order on the calling thread. A write already in flight on the pool is written again from
// the same bytes at the same offset (idempotent), so the blocking fdatasync covers it too.
//
// After any failed write or sync, nothing more is acknowledged: the writer is failed, and
// every pending and later promise rejects (reopen to recover).
import * as fs from 'node:fs'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { SEGMENT_HEADER_SIZE } from './format.js'
import type { ResolvedOptions } from './options.js'
import type { WriterSegments, WriterSegment } from './writer-segments.js'
import type { DurablePublisher } from './durable-file.js'
import { fsCall } from './segments.js'
import type { PendingWrite, Stage } from './stage.js'
import { channels, type WriterCounters } from './stats.js'

const WRITE_THRESHOLD = 64 * 1024 // sync none/interval: start a write once this much is staged
const STAGE_HARD_LIMIT = 4 * 1024 * 1024 // sync none/interval: past this, write on the calling thread
const RECENT_WRITES = 4

export class CommitQueue {
  /** Every LSN up to this one is synced. */
  durableLsn: number
  failed: WalError | undefined

  private readonly queue: PendingWrite[] = []
  private inflight: PendingWrite | undefined
  private pumpScheduled = false
  private forceSync = false // the next sealed write ends with an fdatasync even without durable waiters
  private closed = false
  private timer: NodeJS.Timeout | undefined
  private readonly idleWaiters: (() => void)[] = []
  /** Where durableLsn is published for other processes; a native write job publishes it after its own sync. */
  publisher: DurablePublisher | undefined
  /** The last completed writes, newest last: an in-process reader takes their bytes without a read. */
  private readonly recent: PendingWrite[] = []

  constructor(
    private readonly dir: string,
    private readonly backend: Backend,
    private readonly opts: ResolvedOptions,
    private readonly stage: Stage,
    private readonly files: WriterSegments,
    durableLsn: number,
    private readonly counters: WriterCounters,
    /** Called when durableLsn advances; `blocking` on the blocking path. */
    private readonly onDurable: (lsn: number, blocking: boolean) => void,
    /** Whether an in-process follower may want the last writes' bytes (recentBytes). */
    private readonly keepRecent: () => boolean = () => false,
  ) {
    this.durableLsn = durableLsn
    if (opts.sync === 'interval') {
      this.timer = setInterval(() => this.onInterval(), opts.syncIntervalMs)
      this.timer.unref()
    }
  }

  /**
   * Offset up to which `seg`'s records have been handed to the OS, or -1 once the segment
   * is finished (read it to its end). A segment the writer has rotated away from stays
   * limited while writes for it are still queued or in flight.
   */
  writtenEnd(name: string): number {
    const cur = this.files.current
    if (cur.name === name) return cur.written
    const busy = this.inflight?.seg.name === name ? this.inflight.seg : this.queue.find((w) => w.seg.name === name)?.seg
    return busy ? busy.written : -1
  }

  /**
   * Rotation: queues the finished segment's last write, which cuts its file to `end` and
   * syncs it before `next` is created; staging goes on at the start of `next`.
   */
  finishSegment(end: number, next: WriterSegment): void {
    const w = this.stage.seal(next, SEGMENT_HEADER_SIZE)
    w.dataSync = true
    w.truncateTo = end
    this.queue.push(w)
  }

  /** Promise settled when everything staged so far is written and (if durable) synced. */
  waitFor<T>(value: T, durable: boolean): Promise<T> {
    if (!durable) {
      this.scheduleWrite()
      return Promise.resolve(value)
    }
    return new Promise<T>((resolve, reject) => {
      this.stage.write.waiters.push({ resolve: resolve as (v: unknown) => void, reject, value, durable: true })
      this.schedulePump()
    })
  }

  /** After a blocking append: make it durable now (sync 'always') or just bound the stage. */
  settleBlocking(): void {
    if (this.opts.sync === 'always') this.drainBlocking(true)
    else this.scheduleWrite()
  }

  /** Resolves when every LSN staged so far is durable. */
  syncAll(): Promise<void> {
    if (this.failed) return Promise.reject(this.failedError())
    if (this.durableLsn >= this.stage.write.lastLsn && !this.inflight && this.queue.length === 0 && this.stage.write.len === 0) return Promise.resolve()
    this.forceSync = true
    return this.waitFor(undefined, true)
  }

  /**
   * Resolves when everything staged so far has been handed to the OS. It neither syncs
   * nor fails: a reader calls it, and after a write failure reads what is on disk.
   */
  writeStaged(): Promise<void> {
    if (this.failed || this.closed || (!this.inflight && this.queue.length === 0 && this.stage.write.len === 0)) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const done = () => resolve()
      this.stage.write.waiters.push({ resolve: done, reject: done, value: undefined, durable: false })
      this.schedulePump()
    })
  }

  /**
   * A copy of the written bytes of `name` from `position` to the end of the completed write
   * holding them (a record boundary), when that write is among the last few; else undefined.
   */
  recentBytes(name: string, position: number, max: number): Buffer | undefined {
    for (let i = this.recent.length - 1; i >= 0; i--) {
      const w = this.recent[i]
      if (w.seg.name !== name || position < w.position || position >= w.position + w.len) continue
      const from = position - w.position
      return Buffer.from(w.buf.subarray(from, Math.min(w.len, from + max)))
    }
    return undefined
  }

  /** Calls cb once no write is on the thread pool (at once if none is). */
  whenIdle(cb: () => void): void {
    if (!this.inflight) cb()
    else this.idleWaiters.push(cb)
  }

  /**
   * Writes everything queued or staged, in order, on this thread; with `sync`, ends with
   * an fdatasync so every LSN so far is durable.
   */
  drainBlocking(sync: boolean): void {
    if (this.failed) throw this.failedError()
    const done: PendingWrite[] = []
    let seg: WriterSegment | undefined
    let finalSyncUs = -1
    try {
      const inflight = this.inflight
      if (inflight) {
        this.writeBlocking(inflight)
        // Written now: a reader may read up to here (the pool write only repeats it).
        inflight.seg.written = Math.max(inflight.seg.written, inflight.position + inflight.len)
        seg = inflight.seg
      }
      while (this.queue.length > 0 || this.sealable()) {
        const w = this.queue.length > 0 ? this.queue.shift()! : this.seal()
        done.push(w)
        if (seg && seg !== w.seg && seg.fd !== undefined) this.backend.fdatasyncBlocking(this.files.blockingFd(seg)) // before the successor exists
        this.writeBlocking(w)
        seg = w.seg
      }
      const cur = this.files.current
      if (sync && cur.fd !== undefined) {
        const t0 = performance.now()
        this.backend.fdatasyncBlocking(this.files.blockingFd(cur))
        finalSyncUs = (performance.now() - t0) * 1000
      }
    } catch (err) {
      this.fail(err, seg ?? this.files.current)
      for (const w of done) this.reject(w)
      throw this.failed
    }
    const before = this.durableLsn
    if (sync) this.durableLsn = Math.max(this.durableLsn, this.stage.write.lastLsn)
    for (const w of done) this.completed(w, false)
    if (finalSyncUs >= 0) {
      let ops = 0
      for (const w of done) if (!w.dataSync) ops += w.ops
      this.synced(ops, 0, finalSyncUs)
    }
    if (this.durableLsn > before) this.onDurable(this.durableLsn, true)
    for (const w of done) this.settle(w)
    this.files.closeRetired(this.inflight?.seg)
  }

  failedError(): WalError {
    return new WalError(
      'WAL_FAILED',
      `The WAL in ${this.dir} stopped accepting appends after an I/O error (${this.failed?.message ?? 'unknown'}). Close it and reopen: recovery keeps every acknowledged record.`,
      { cause: this.failed },
    )
  }

  /** Stops the timer and takes no more writes to the pool; a write in flight finishes. */
  close(): void {
    this.closed = true
    if (this.timer) clearInterval(this.timer)
  }

  /** The segment a write on the pool still uses, if any. */
  get busySegment(): WriterSegment | undefined {
    return this.inflight?.seg
  }

  // --- the pool path -------------------------------------------------------------------

  private sealable(): boolean {
    return !this.stage.empty || this.forceSync
  }

  private seal(): PendingWrite {
    const cur = this.stage.write
    const w = this.stage.seal(cur.seg, cur.position + cur.len)
    if (this.forceSync || w.waiters.some((x) => x.durable)) w.dataSync = true
    this.forceSync = false
    return w
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.inflight) return
    this.pumpScheduled = true
    queueMicrotask(() => this.pump())
  }

  private scheduleWrite(): void {
    const len = this.stage.write.len
    if (len >= STAGE_HARD_LIMIT && this.inflight) {
      this.drainBlocking(false)
    } else if (len >= WRITE_THRESHOLD && !this.inflight) {
      this.pump()
    } else if (!this.pumpScheduled && !this.inflight) {
      this.pumpScheduled = true
      setImmediate(() => this.pump())
    }
  }

  private pump(): void {
    this.pumpScheduled = false
    if (this.inflight || this.failed) return
    const w = this.queue.length > 0 ? this.queue.shift()! : this.sealable() ? this.seal() : undefined
    if (!w) return
    this.inflight = w
    this.run(w).then(
      () => this.ran(w),
      (err) => {
        if (this.inflight === w) this.inflight = undefined
        this.fail(err, w.seg)
        this.reject(w)
        this.files.closeRetired(this.inflight?.seg)
        this.notifyIdle()
      },
    )
  }

  /** One write on the thread pool: create its segment if new, shrink a finished one, write (+ sync). */
  private async run(w: PendingWrite): Promise<void> {
    await this.files.create(w.seg)
    if (w.truncateTo >= 0) {
      await this.files.extensionSettled(w.seg) // zeros still being appended would land after the cut
      const fd = w.seg.fd!
      await fsCall<void>((cb) => fs.ftruncate(fd, w.truncateTo, cb))
    }
    // The durable LSN this write makes true is published by the same pool job, right after
    // its sync (the backends that can): one job per commit rather than a second for DURABLE.
    const pub = w.dataSync && this.backend.publishesAfterSync ? this.publisher?.claim(w.lastLsn) : undefined
    let published = false
    const t0 = performance.now()
    try {
      published = await this.backend.write(w.seg.fd!, w.buf, 0, w.len, w.position, w.dataSync, pub && { fd: this.publisher!.fd, bytes: pub })
    } finally {
      if (pub) this.publisher!.claimed(w.lastLsn, published)
    }
    w.syncUs = (performance.now() - t0) * 1000
  }

  private ran(w: PendingWrite): void {
    this.inflight = undefined
    if (this.failed) {
      // A sync on another path failed meanwhile: this write's own success proves nothing
      // (Linux reports a writeback error once per open file), so it is not acknowledged,
      // nor left published.
      this.reject(w)
      this.publisher?.restore()
      this.files.closeRetired(undefined)
      this.notifyIdle()
      return
    }
    this.completed(w, true)
    this.files.closeRetired(undefined)
    // Start the next group's write+sync before settling this group's promises: the
    // callers' continuations (which stage the group after next) then run while the disk
    // works, instead of before it. Writes still run one at a time, in order.
    if (!this.closed && (this.queue.length > 0 || this.sealable())) this.pump()
    this.settle(w)
    this.notifyIdle()
  }

  private writeBlocking(w: PendingWrite): void {
    this.files.createBlocking(w.seg)
    const fd = this.files.blockingFd(w.seg)
    if (w.truncateTo >= 0) {
      fs.ftruncateSync(fd, w.truncateTo)
      if (this.files.extending(w.seg)) w.seg.cutTo = w.truncateTo // cut again once those zeros are in
    }
    const t0 = performance.now()
    this.backend.writeBlocking(fd, w.buf, 0, w.len, w.position)
    if (w.dataSync) this.backend.fdatasyncBlocking(fd)
    w.syncUs = (performance.now() - t0) * 1000
  }

  /**
   * The write is on disk (and synced if it asked to be): readers and durableLsn may
   * advance; `notify` tells followers (the blocking path tells them once, at its end).
   */
  private completed(w: PendingWrite, notify: boolean): void {
    w.seg.written = Math.max(w.seg.written, w.position + w.len)
    this.counters.bytesWritten += w.len
    if (w.dataSync) {
      const advanced = w.lastLsn > this.durableLsn
      if (advanced) this.durableLsn = w.lastLsn
      this.synced(w.ops, w.len, w.syncUs)
      if (advanced && notify) this.onDurable(this.durableLsn, false)
    }
    if (this.keepRecent()) {
      this.recent.push(w)
      if (this.recent.length > RECENT_WRITES) this.stage.recycle(this.recent.shift()!.buf)
    } else {
      // No in-process follower: the buffer (grown to the largest group so far) is reused at once.
      for (const r of this.recent.splice(0)) this.stage.recycle(r.buf)
      this.stage.recycle(w.buf)
    }
  }

  private synced(groupSize: number, bytes: number, us: number): void {
    this.counters.synced(groupSize, us)
    if (channels.sync.hasSubscribers) channels.sync.publish({ dir: this.dir, durableLsn: this.durableLsn, groupSize, bytes, latencyUs: us })
  }

  private settle(w: PendingWrite): void {
    const waiters = w.waiters
    w.waiters = []
    for (const x of waiters) x.resolve(x.value)
  }

  private notifyIdle(): void {
    if (this.inflight) return
    for (const cb of this.idleWaiters.splice(0)) cb()
  }

  private onInterval(): void {
    if (this.failed || this.closed) return
    if (this.durableLsn < this.stage.write.lastLsn) {
      this.forceSync = true
      this.schedulePump()
    }
  }

  // --- failure -------------------------------------------------------------------------

  private fail(err: unknown, seg: WriterSegment): void {
    if (this.failed) return
    this.failed = err instanceof WalError ? err : ioError(err, 'Writing the log', seg.path || this.dir, 'write')
    // Every pending promise learns of the failure; nothing queued will be written.
    for (const w of this.queue) this.reject(w)
    this.queue.length = 0
    this.reject(this.stage.write)
    this.stage.write.len = 0
    if (this.inflight) this.reject(this.inflight)
  }

  private reject(w: PendingWrite): void {
    const err = this.failed!
    for (const x of w.waiters) x.reject(err)
    w.waiters = []
  }
}
