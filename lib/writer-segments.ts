// The writer's segment files: which exist, which one appends go into, the creation of the
// next one (on the thread pool for asynchronous writes, on the calling thread for the
// blocking path), the zeros kept ahead of the records (a step at a time), the next
// segment's zero-filled spare, and the file descriptors of each.
//
// Rules: names strictly increase; a segment is created whole (header synced, renamed into
// place, directory synced) before any record is written to it; a finished segment is
// synced before its successor exists (the commit queue orders that).
import * as fs from 'node:fs'
import type { Backend } from './backend.js'
import { WalError } from './errors.js'
import { SEGMENT_HEADER_SIZE } from './format.js'
import type { ResolvedOptions } from './options.js'
import { channels, type WriterCounters } from './stats.js'
import { createSegment, createSegmentAsync, discardSpare, extendWithZeros, fsCall, preallocateStep, prepareSpare, syncDir, syncDirAsync, type OpenSegment, type SegmentRef, type Spare } from './segments.js'

export interface WriterSegment {
  name: string // '' until the file is created
  path: string
  firstLsn: number
  prevLsn: number
  /** Set once the file is created; used by writes on the thread pool. */
  fd: number | undefined
  /** The descriptors are closed: the writer is done with this segment. */
  closed: boolean
  /** False while the directory entry of a just-created segment is not yet synced. */
  dirSynced: boolean
  /**
   * A second open file for the blocking path. Linux reports a writeback error once per
   * open file, so a blocking sync here and a concurrent pool sync on `fd` must not share
   * one: each would risk "succeeding" on the other's behalf.
   */
  blockingFd: number | undefined
  end: number // offset after the last record staged for it
  written: number // offset up to which writes have completed
  /** File size known to be zero-filled (or records) and synced: writes below it change no size. */
  zeroEnd: number
  /** A zero extension failed (e.g. ENOSPC): no more are tried for this segment. */
  noExtend: boolean
  /** Set when the segment is cut at rotation while an extension ran: cut again once it ends. */
  cutTo: number
}

/** A segment the writer starts in: created by open (or repair), already durable. */
export function openedSegment(made: OpenSegment, end: number): WriterSegment {
  return { name: made.name, path: made.path, firstLsn: made.firstLsn, prevLsn: made.prevLsn, fd: made.fd, closed: false, dirSynced: true, blockingFd: undefined, end, written: end, zeroEnd: made.size, noExtend: false, cutTo: -1 }
}

export class WriterSegments {
  /** Segments on disk that the writer has not deleted, oldest first. */
  readonly list: SegmentRef[]
  /** The segment appends go into. Its file may not exist yet. */
  current: WriterSegment
  private newest: WriterSegment | undefined // the newest segment with an open fd
  private readonly retired: WriterSegment[] = [] // fds to close once no write uses them
  private spare: Spare | undefined // zero-filled file for the next segment
  private sparePending = false
  private extension: { seg: WriterSegment; done: Promise<void> } | undefined // zeros being appended
  private closed = false

  constructor(
    private readonly dir: string,
    private readonly backend: Backend,
    private readonly opts: ResolvedOptions,
    list: SegmentRef[],
    current: WriterSegment,
    /** The latest checkpoint, which new segment headers carry. */
    private readonly checkpointLsn: () => number,
    private readonly counters: WriterCounters,
  ) {
    this.list = list
    this.current = current
    if (current.fd !== undefined) this.newest = current
  }

  /** Starts the segment after the current one; its file is created by the first write to it. */
  startNext(lastLsn: number): WriterSegment {
    // Names strictly increase: a segment that holds only CHECKPOINT records (no LSN taken
    // since it began) is followed by one named one higher, never by one of the same name.
    const firstLsn = Math.max(lastLsn + 1, this.current.firstLsn + 1)
    this.current = { name: '', path: '', firstLsn, prevLsn: lastLsn, fd: undefined, closed: false, dirSynced: false, blockingFd: undefined, end: SEGMENT_HEADER_SIZE, written: SEGMENT_HEADER_SIZE, zeroEnd: 0, noExtend: false, cutTo: -1 }
    return this.current
  }

  /**
   * Keeps zeros ahead of the records: once less than half a step of the current segment's
   * zero-filled region is left, appends another step on the thread pool. Once the segment
   * is half full, also zero-fills the first step of the next segment's file.
   */
  preallocateIfDue(): void {
    if (!this.opts.preallocate || this.closed) return
    const seg = this.current
    const step = preallocateStep(this.opts.segmentSize)
    if (!this.extension && seg.fd !== undefined && !seg.noExtend && seg.zeroEnd < this.opts.segmentSize && seg.end + step / 2 > seg.zeroEnd) this.extend(seg, step)
    if (this.spare || this.sparePending || seg.end <= this.opts.segmentSize / 2) return
    this.sparePending = true
    prepareSpare(this.dir, this.backend, step).then(
      (spare) => {
        this.sparePending = false
        this.counters.bytesPreallocated += spare.size
        if (this.closed) discardSpare(spare)
        else this.spare = spare
      },
      () => {
        // No spare (e.g. ENOSPC): the segment is then created without zero fill, and a
        // real shortage of space surfaces on the records' own write.
        this.sparePending = false
      },
    )
  }

  private extend(seg: WriterSegment, step: number): void {
    const target = Math.min(this.opts.segmentSize, Math.max(seg.zeroEnd, seg.end) + step)
    const done = extendWithZeros(seg.path, target, this.backend, () => this.closed || this.current !== seg).then(
      ({ size, zeros }) => {
        if (size > seg.zeroEnd) seg.zeroEnd = size
        this.counters.bytesPreallocated += zeros
      },
      () => {
        // No zeros ahead (e.g. ENOSPC): records then grow the file themselves, and a real
        // shortage of space surfaces on their own write.
        seg.noExtend = true
      },
    )
    this.extension = {
      seg,
      done: done.then(async () => {
        // A blocking rotation cut the file while zeros were being appended: cut it again
        // (they were only zeros after the last record; readers and open take them for a
        // clean end). Never once closed: the lock may be another writer's by then.
        if (seg.cutTo >= 0 && !this.closed) await fsCall<void>((cb) => fs.truncate(seg.path, seg.cutTo, cb)).catch(() => undefined)
        this.extension = undefined
      }),
    }
  }

  /** Resolves once no zero extension of `seg` is running: a finished segment is cut after it. */
  extensionSettled(seg?: WriterSegment): Promise<void> {
    const x = this.extension
    return x && (seg === undefined || x.seg === seg) ? x.done : Promise.resolve()
  }

  /** Whether zeros are being appended to `seg` right now. */
  extending(seg: WriterSegment): boolean {
    return this.extension?.seg === seg
  }

  /** Adopts a spare made by open (the first segment's zero fill). */
  adoptSpare(spare: Spare): void {
    this.spare = spare
  }

  /** Creates seg's file on this thread, or finishes its creation (the directory sync). */
  createBlocking(seg: WriterSegment): void {
    if (seg.fd !== undefined) {
      if (!seg.dirSynced) {
        syncDir(this.dir)
        seg.dirSynced = true
      }
      return
    }
    const spare = this.takeSpare()
    this.adopt(seg, createSegment(this.dir, this.backend, seg.firstLsn, this.headerOf(seg), this.preallocateTo(), spare))
    seg.dirSynced = true
  }

  /** Creates seg's file on the thread pool; the blocking path may create it meanwhile. */
  async create(seg: WriterSegment): Promise<void> {
    if (seg.fd === undefined) {
      const spare = this.takeSpare()
      const made = await createSegmentAsync(this.dir, this.backend, seg.firstLsn, this.headerOf(seg), this.preallocateTo(), spare, () => seg.fd !== undefined)
      if (made) {
        this.adopt(seg, made)
        seg.dirSynced = false
      }
    }
    if (!seg.dirSynced) {
      await syncDirAsync(this.dir)
      seg.dirSynced = true
    }
  }

  /** The descriptor of seg for the blocking path (see WriterSegment.blockingFd). */
  blockingFd(seg: WriterSegment): number {
    if (seg.blockingFd === undefined) seg.blockingFd = fs.openSync(seg.path, 'r+')
    return seg.blockingFd
  }

  /**
   * Removes from the list the segments that hold only LSNs up to `lsn` (segment i holds
   * LSNs below segment i+1's name; the last one is always kept) and returns them.
   */
  deleteThrough(lsn: number): SegmentRef[] {
    let n = 0
    while (this.list.length - n > 1 && this.list[n + 1].firstLsn - 1 <= lsn) n++
    return this.list.splice(0, n)
  }

  /** Closes the fds of segments no longer written to, except the one `busy` (a write on the pool) uses. */
  closeRetired(busy: WriterSegment | undefined): void {
    for (let i = this.retired.length - 1; i >= 0; i--) {
      const s = this.retired[i]
      if (busy === s) continue
      this.retired.splice(i, 1)
      if (s.fd !== undefined) fs.closeSync(s.fd)
      if (s.blockingFd !== undefined) fs.closeSync(s.blockingFd)
      s.blockingFd = undefined
      s.closed = true
    }
  }

  /** Releases every fd and the spare; a write still on the pool keeps its fd until closeRetired. */
  shutdown(busy: WriterSegment | undefined): void {
    this.closed = true
    if (this.newest) this.retired.push(this.newest)
    this.newest = undefined
    this.closeRetired(busy)
    if (this.spare) discardSpare(this.spare)
    this.spare = undefined
  }

  private headerOf(seg: WriterSegment) {
    return { prevLsn: seg.prevLsn, checkpointLsn: Math.min(this.checkpointLsn(), seg.prevLsn) }
  }

  /** Without a spare, a new segment's first step is sized (not zero-filled): see createSegment. */
  private preallocateTo(): number {
    return this.opts.preallocate ? preallocateStep(this.opts.segmentSize) : 0
  }

  private takeSpare(): Spare | undefined {
    const spare = this.spare
    this.spare = undefined
    return spare
  }

  private adopt(seg: WriterSegment, made: OpenSegment): void {
    if (this.list.some((s) => s.name === made.name)) {
      fs.closeSync(made.fd)
      throw new WalError('WAL_CORRUPT', `The writer created segment ${made.name} in ${this.dir} twice; it stopped rather than overwrite it. Please report this.`, { segment: made.name, offset: 0 })
    }
    seg.fd = made.fd
    seg.name = made.name
    seg.path = made.path
    seg.zeroEnd = made.size
    this.list.push({ name: made.name, firstLsn: seg.firstLsn })
    this.counters.rotations++
    if (channels.rotate.hasSubscribers) channels.rotate.publish({ dir: this.dir, segment: made.name, prevLsn: seg.prevLsn })
    if (this.closed) {
      this.retired.push(seg) // closed while the pool created it: closed once its write ends
      return
    }
    if (this.newest) this.retired.push(this.newest)
    this.newest = seg
  }
}
