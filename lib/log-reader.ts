// The log reader: walks the segments in order, checking the chain (each segment
// continues exactly where the one before it ended, the first one where the log was
// checkpointed away), and reads each through a SegmentReader into one RecordCursor.
// Damage stops it with WAL_CORRUPT rather than skip data; a segment deleted under it is
// WAL_GONE. It is a state machine: step() says what to do (open a segment or read a
// chunk), and the blocking and promise drivers below do it.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { SEGMENT_HEADER_SIZE, decodeSegmentHeader } from './format.js'
import { RecordCursor, type CursorOutput } from './record-cursor.js'
import { SegmentReader, openSegment, openSegmentBlocking, read, readBlocking, type OpenedSegment, type ReadRequest, type ReadResult } from './record-reader.js'
import { readPrevLsn, type SegmentRef } from './segments.js'

/** What a reader needs to know about the log it reads. */
export interface LogSource {
  dir: string
  backend: Backend
  /** Segments now on disk, oldest first (asked again as reading advances). */
  segments(): readonly SegmentRef[]
  /** Bytes of `name` known to hold whole records, or -1 to read to the end of the file. */
  limitFor(name: string): number
  /** Latest checkpoint: the first segment's predecessor may have been deleted up to it. */
  checkpointLsn(): number
  /** Lowest LSN the log still holds (asking for less is WAL_GONE). */
  firstLsn(): number
  /** Highest LSN known durable: a follower yields nothing above it. */
  durableLsn(): number
  /**
   * True for a readOnly handle: segments are listed from the directory (refresh()), the
   * last one may be growing in another process (read live), and a segment that has a
   * successor ends where the successor's header says it does.
   */
  live: boolean
  /** Takes a fresh look at the directory (live sources): `full` when reading starts, not after each wait. */
  refresh(full: boolean): void
  /** The writer's recently written bytes of `name` from `position` (at most `max`), ending on a record boundary; undefined when not at hand. */
  recentBytes?(name: string, position: number, max: number): Buffer | undefined
  /** How many changes (wake-ups) there have been: a follower compares it across a step. */
  changes(): number
  /** Calls `cb` once, at the next change a follower may care about (durableLsn advanced, a new segment, close). Returns the unsubscribe. */
  onChange(cb: () => void): () => void
  /**
   * Registers a reader: `position()` is the first LSN of the oldest segment it may still
   * read, which checkpoint must not delete. Returns the function to call as it advances
   * (and once more when it ends).
   */
  track(reader: TrackedReader): () => void
}

export interface TrackedReader {
  /** Name-LSN of the oldest segment still needed; Infinity once finished. */
  position(): number
  /** The handle is closing: release files; later reads fail with `err`. */
  abort(err: WalError): void
  /** A follower (it reads what the writer has just written). */
  readonly follows?: boolean
}

export type ReaderStep =
  | { open: SegmentRef; path: string; read?: undefined; wait?: undefined }
  | { read: ReadRequest; open?: undefined; wait?: undefined }
  | { wait: true; open?: undefined; read?: undefined }
  | undefined

/** What a driver did: one step ('more'), nothing until the log changes ('wait'), or the end ('done'). */
export type StepResult = 'more' | 'wait' | 'done'

// Replay's largest read. Every entry of a chunk is a view that keeps the whole chunk alive,
// and the entries waiting to be handed out survive young-generation GCs: at 1 MiB, replay of
// 1M entries grew RSS by 42 MiB, at 256 KiB by 15 MiB, at the same speed (bench D).
const CHUNK_SIZE = 256 * 1024

function goneError(dir: string, from: number, firstLsn: number, why: string): WalError {
  return new WalError(
    'WAL_GONE',
    `Entries from LSN ${from} were asked for, but ${why}; the log in ${dir} now starts at LSN ${firstLsn}. Replay from ${firstLsn} (or from 0 for everything retained), and keep a cursor to stop checkpoints deleting what a consumer still needs.`,
    { firstLsn },
  )
}

function readError(err: unknown, what: string, path: string): WalError {
  return err instanceof WalError ? err : ioError(err, what, path, 'read')
}

export class LogReader {
  private seg: SegmentRef | undefined
  private reader: SegmentReader | undefined
  private started = false
  private finished = false
  private failure: WalError | undefined
  private readonly cursor: RecordCursor
  /** Called when the reader moves to another segment or ends (checkpoint may delete more). */
  advanced: () => void = () => {}

  private waiting = false
  private rechecked = false // a live source was looked at again in this step

  /** A follower (`follow`) waits at the end of the log instead of ending, and yields only what is durable. */
  constructor(
    private readonly src: LogSource,
    private readonly from: number,
    output: CursorOutput,
    private readonly follow = false,
  ) {
    this.cursor = new RecordCursor(0, 0, SEGMENT_HEADER_SIZE, output)
  }

  position(): number {
    if (this.finished) return Infinity
    return this.seg ? this.seg.firstLsn : 0
  }

  /** What to do next; undefined when the log is read to its end. */
  step(): ReaderStep {
    if (this.failure) throw this.failure
    if (!this.started) this.start()
    if (this.waiting) {
      // Woken: the log may have changed.
      this.waiting = false
      if (this.src.live) this.src.refresh(false)
      this.reader?.resume()
    }
    if (this.follow) this.cursor.lsnLimit = this.durableLimit()
    this.rechecked = false
    for (;;) {
      if (this.finished) return undefined
      const r = this.reader
      if (!r) {
        const next = this.nextSegment()
        if (next) return next
        // Every segment is read: a follower waits for the next one.
        if (!this.follow) return this.finish()
        const w = this.waitOrRecheck()
        if (w) return w
        continue
      }
      const req = r.next()
      if (req) {
        // Bytes the writer of this process has just written need no read: scanned here.
        const recent = req.zeros ? undefined : this.src.recentBytes?.(this.seg!.name, req.position, req.buf.length)
        if (!recent) return { read: req }
        const scan = this.src.backend.scan(recent, 0, recent.length)
        r.accept({ fd: req.fd, buf: recent, position: req.position }, { ...scan, bytes: recent.length })
        continue
      }
      const name = this.seg!.name
      if (r.stopped === 'damage') {
        if (!this.endsBefore(r.damage!.offset)) throw this.corrupt(name, r.damage!.offset, r.damage!.what)
      } else if (r.stopped === 'limit') {
        const limit = this.src.limitFor(name)
        if (limit < 0 || r.pos < limit) {
          // Held back by the LSN limit: what follows is not durable yet (unless the marks
          // just read show that it is).
          const durable = this.durableLimit()
          if (durable > this.cursor.lsnLimit) {
            this.cursor.lsnLimit = durable
            continue
          }
          const w = this.waitOrRecheck()
          if (w) return w
          continue
        }
        // Caught up with the writer in its current segment, unless it has moved on.
        if (this.isLast()) {
          if (!this.follow) return this.finish()
          const w = this.waitOrRecheck()
          if (w) return w
          continue
        }
        // It has moved on: read this segment to its end (limit -1 now) or leave it.
        if (this.src.limitFor(name) < 0) continue
      } else if (r.endedLive && !this.isLast()) {
        // Read live while it was the last segment; another has appeared since: read it on to its real end.
        r.resume()
        continue
      } else if (this.follow && this.src.live && this.isLast()) {
        // The end of what another process has written so far.
        const w = this.waitOrRecheck()
        if (w) return w
        continue
      }
      this.closeSegment()
    }
  }

  /** What a follower may yield up to. A record's durable mark is a durable LSN too (for a writer that publishes none). */
  private durableLimit(): number {
    return this.src.live ? Math.max(this.src.durableLsn(), this.cursor.maxMark) : this.src.durableLsn()
  }

  /**
   * A follower has read all it may: it waits for a change. A live source is looked at once
   * more first (its DURABLE may have been rewritten while this reader was busy, and such a
   * change wakes nobody); if more became durable, reading goes on (undefined).
   */
  private waitOrRecheck(): ReaderStep | undefined {
    if (this.src.live && !this.rechecked) {
      this.rechecked = true
      this.src.refresh(false)
      const durable = this.durableLimit()
      if (durable > this.cursor.lsnLimit) {
        this.cursor.lsnLimit = durable
        this.reader?.resume()
        return undefined
      }
    }
    this.waiting = true
    return { wait: true }
  }

  /**
   * Damage in a live source's segment that has a successor: a segment ends at the LSN its
   * successor's header continues after, and what lies beyond (the torn tail of a writer
   * that crashed, removed by its next open) is not part of the log.
   */
  private endsBefore(offset: number): boolean {
    if (!this.src.live) return false
    const segs = this.src.segments()
    const next = segs.find((s) => s.firstLsn > this.seg!.firstLsn)
    if (!next) return false
    const prev = readPrevLsn(this.src.dir, next, this.src.backend)
    // Every LSN up to where the successor continues is read whole (no batch left open).
    return prev !== undefined && prev === this.cursor.keptLsn && this.cursor.batchStart < 0 && offset >= this.cursor.end
  }

  /** The segment asked for by step() is open. */
  opened(file: OpenedSegment): void {
    const seg = this.pending!
    this.pending = undefined
    if (this.failure || this.finished) {
      fs.closeSync(file.fd)
      if (this.failure) throw this.failure
      return
    }
    const prev = this.seg
    const first = this.pendingFirst
    this.seg = seg
    this.reader = new SegmentReader(file.fd, file.size, this.cursor, () => this.src.limitFor(seg.name), () => this.measure(), CHUNK_SIZE, SEGMENT_HEADER_SIZE, this.src.live ? () => this.isLast() : undefined)
    this.advanced()
    const h = decodeSegmentHeader(file.header, this.src.backend.crc32c)
    if (typeof h === 'string') {
      this.closeSegment()
      if (h.startsWith('bad magic'))
        throw new WalError(
          'WAL_CORRUPT',
          `${seg.name} in ${this.src.dir} is named like a segment but is not a fastwal segment (${h}). Move it out of the log directory; if it was a segment, restore it from a replica or backup.`,
          { segment: seg.name, offset: 0 },
        )
      throw this.corrupt(seg.name, 0, `Bad segment header (${h})`)
    }
    const lastSeen = this.cursor.lastSeen
    if (prev && h.prevLsn !== lastSeen) {
      this.closeSegment()
      throw this.corrupt(seg.name, 0, `Segment continues after LSN ${h.prevLsn} but the segment before it (${prev.name}) ends at LSN ${lastSeen}: a segment is missing or out of place`)
    }
    if (!prev && first && h.prevLsn > this.src.checkpointLsn()) {
      this.closeSegment()
      throw this.corrupt(seg.name, 0, `The first segment continues after LSN ${h.prevLsn}, but the log was checkpointed only up to LSN ${this.src.checkpointLsn()}: the segments before it are missing`)
    }
    if (!prev) this.cursor.lastSeen = h.prevLsn
    this.cursor.enterSegment(SEGMENT_HEADER_SIZE, h.checkpointLsn)
  }

  /** Opening the segment asked for by step() failed. */
  openFailed(err: unknown, path: string): never {
    const seg = this.pending!
    this.pending = undefined
    if (this.failure) throw this.failure
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      this.finish()
      throw goneError(this.src.dir, Math.max(this.from, this.cursor.lastSeen + 1), this.src.firstLsn(), `segment ${seg.name}, which replay still had to read, was deleted (by a checkpoint in another process)`)
    }
    throw readError(err, 'Opening a segment for replay', path)
  }

  /** Takes a chunk read for step()'s request. */
  accept(req: ReadRequest, chunk: ReadResult): void {
    if (this.failure) throw this.failure
    if (this.reader?.fd !== req.fd) return // the segment was closed meanwhile (return() or close)
    this.reader.accept(req, chunk)
  }

  /** Throws if the reader was closed with an error (the handle closed, or aborted). */
  check(): void {
    if (this.failure) throw this.failure
  }

  /** Ends reading; with `err`, every later call throws it. */
  close(err?: WalError): void {
    this.failure ??= err
    this.finish()
  }

  private pending: SegmentRef | undefined // asked to be opened by step()
  private pendingFirst = false // ...and it is the first segment of the log

  private start(): void {
    this.started = true
    if (this.src.live) this.src.refresh(true)
    const first = this.src.firstLsn()
    const cp = this.src.checkpointLsn()
    if (first > cp + 1 && this.src.segments().length > 0) {
      // The log starts after LSNs that no checkpoint released: its first segments are missing.
      const seg = this.src.segments()[0]
      this.finish()
      throw this.corrupt(seg.name, 0, `The first segment continues after LSN ${first - 1}, but the log was checkpointed only up to LSN ${cp}: the segments before it are missing`)
    }
    if (this.from > 0 && this.from < first) {
      this.finish()
      throw goneError(this.src.dir, this.from, first, 'a checkpoint has deleted the entries before it')
    }
  }

  private nextSegment(): ReaderStep {
    const segs = this.src.segments()
    let idx: number
    const prev = this.seg
    if (!prev) {
      // Skip segments wholly before `from`: segment i holds LSNs below segment i+1's first.
      idx = 0
      while (idx + 1 < segs.length && segs[idx + 1].firstLsn <= this.from) idx++
    } else {
      idx = segs.findIndex((s) => s.firstLsn > prev.firstLsn)
    }
    if (idx < 0 || idx >= segs.length) return undefined
    this.pending = segs[idx]
    this.pendingFirst = idx === 0
    return { open: segs[idx], path: join(this.src.dir, segs[idx].name) }
  }

  private isLast(): boolean {
    const first = this.seg!.firstLsn
    return !this.src.segments().some((s) => s.firstLsn > first)
  }

  private finish(): undefined {
    this.closeSegment()
    if (!this.finished) {
      this.finished = true
      this.advanced()
    }
    return undefined
  }

  private measure(): number {
    try {
      return fs.fstatSync(this.reader!.fd).size
    } catch (err) {
      throw readError(err, 'Measuring a segment for replay', join(this.src.dir, this.seg!.name))
    }
  }

  private closeSegment(): void {
    if (this.reader) fs.closeSync(this.reader.fd)
    this.reader = undefined
  }

  private corrupt(segment: string, offset: number, what: string): WalError {
    return new WalError(
      'WAL_CORRUPT',
      `${what} in segment ${segment} of ${this.src.dir} at byte offset ${offset}. Replay stopped there rather than skip data; restore the file from a replica or backup.`,
      { segment, offset },
    )
  }
}

/** Does one step of `reader` on the calling thread. */
export function stepBlocking(reader: LogReader, backend: Backend, dir: string): StepResult {
  const s = reader.step()
  if (!s) return 'done'
  if (s.wait) return 'wait'
  if (s.open) {
    let file: OpenedSegment
    try {
      file = openSegmentBlocking(s.path)
    } catch (err) {
      reader.openFailed(err, s.path)
    }
    reader.opened(file)
    return 'more'
  }
  let chunk
  try {
    chunk = readBlocking(backend, s.read)
  } catch (err) {
    throw readError(err, 'Reading a segment for replay', dir)
  }
  reader.accept(s.read, chunk)
  return 'more'
}

/** Does one step of `reader` on the thread pool. */
export async function step(reader: LogReader, backend: Backend, dir: string): Promise<StepResult> {
  const s = reader.step()
  if (!s) return 'done'
  if (s.wait) return 'wait'
  if (s.open) {
    let file: OpenedSegment
    try {
      file = await openSegment(s.path, backend)
    } catch (err) {
      reader.openFailed(err, s.path)
    }
    reader.opened(file)
    return 'more'
  }
  let chunk
  try {
    chunk = await read(backend, s.read)
  } catch (err) {
    throw readError(err, 'Reading a segment for replay', dir)
  }
  reader.accept(s.read, chunk)
  return 'more'
}
