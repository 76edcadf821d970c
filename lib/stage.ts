// The staging buffer: records are encoded into it at call time, back to back, for the
// segment they go to. Sealing it turns what is staged into a PendingWrite: one
// positional write of contiguous bytes (+ fdatasync), run by the commit queue.
import type { WriterSegment } from './writer-segments.js'

export interface Waiter {
  resolve(value: unknown): void
  reject(err: unknown): void
  value: unknown
  /** The waiter needs its bytes synced, not only written. */
  durable: boolean
}

export interface PendingWrite {
  seg: WriterSegment
  buf: Buffer
  len: number
  /** File offset of buf[0]. */
  position: number
  /** Every LSN up to this one is in this write or an earlier one. */
  lastLsn: number
  waiters: Waiter[]
  /** fdatasync after the write. */
  dataSync: boolean
  /** >= 0: shrink the file to this size first (a finished segment drops its preallocation). */
  truncateTo: number
  /** Appends and batches staged in it (the group a sync of it commits). */
  ops: number
  /** Microseconds the write + fdatasync took, once done. */
  syncUs: number
}

const STAGE_INITIAL = 256 * 1024

export class Stage {
  /** What is being staged now; sealed into the queue as is. */
  write: PendingWrite
  private reusable: Buffer | undefined // the buffer of a completed write, for the next stage

  constructor(seg: WriterSegment, position: number, lastLsn: number) {
    this.write = this.start(seg, position, lastLsn)
  }

  /** Room for `size` more bytes in the current write; returns it. */
  reserve(size: number): PendingWrite {
    const w = this.write
    if (w.len + size > w.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(w.buf.length * 2, w.len + size))
      w.buf.copy(grown, 0, 0, w.len)
      w.buf = grown
    }
    return w
  }

  /** Whether sealing would produce a write: bytes, waiters or a requested sync. */
  get empty(): boolean {
    return this.write.len === 0 && this.write.waiters.length === 0
  }

  /** Ends the current write and starts the next one, at `position` of `seg`. */
  seal(seg: WriterSegment, position: number): PendingWrite {
    const w = this.write
    this.write = this.start(seg, position, w.lastLsn)
    return w
  }

  /** A completed write's buffer may be reused for a later stage. */
  recycle(buf: Buffer): void {
    if ((!this.reusable || this.reusable.length < buf.length) && buf !== this.write.buf) this.reusable = buf
  }

  private start(seg: WriterSegment, position: number, lastLsn: number): PendingWrite {
    const buf = this.reusable ?? Buffer.allocUnsafe(STAGE_INITIAL)
    this.reusable = undefined
    return { seg, buf, len: 0, position, lastLsn, waiters: [], dataSync: false, truncateTo: -1, ops: 0, syncUs: 0 }
  }
}
