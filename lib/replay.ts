// Replay: streams records back in chunks read (and CRC-checked) by the backend, and
// yields a batch's entries only when its COMMIT matches its BEGIN (SPEC §2 "Atomic
// batches"). Memory is one chunk plus the largest open batch. The sync and async
// iterators share ReplayReader and differ only in how a chunk is read.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend, ScanChunk } from './backend.js'
import { WalError, ioError } from './errors.js'
import {
  FLAG_BATCH,
  IX_AUX,
  IX_LENGTH,
  IX_LSN,
  IX_POS,
  IX_STRIDE,
  IX_TYPE,
  RECORD_HEADER_SIZE,
  SCAN_BAD,
  SCAN_END,
  SCAN_NEED_MORE,
  SCAN_ZERO,
  SEGMENT_HEADER_SIZE,
  TYPE_BEGIN,
  TYPE_COMMIT,
  TYPE_DEL,
  TYPE_PUT,
  decodeSegmentHeader,
  readU64,
  type SegmentHeader,
} from './format.js'
import { lsnInOrder } from './recovery.js'
import type { SegmentRef } from './segments.js'

export interface Entry {
  lsn: number
  type: 'put' | 'del'
  key: Buffer
  value: Buffer | undefined
}

export interface Batch {
  first: number
  last: number
  entries: Entry[]
}

/** What replay needs to know about the log it reads. */
export interface ReplaySource {
  dir: string
  backend: Backend
  /** Segments now on disk, oldest first (re-read as replay advances). */
  segments(): readonly SegmentRef[]
  /** Bytes of `name` known to hold whole records, or -1 to read to the end of the file. */
  limitFor(name: string): number
  /** Latest checkpoint: the first segment's predecessor may have been deleted up to it. */
  checkpointLsn(): number
  /** Lowest LSN the log still holds (asking for less is WAL_GONE). */
  firstLsn(): number
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
}

const CHUNK_SIZE = 1024 * 1024

export interface ReadRequest {
  fd: number
  buf: Buffer
  position: number
}

function corrupt(src: ReplaySource, segment: string, offset: number, what: string): WalError {
  return new WalError(
    'WAL_CORRUPT',
    `${what} in segment ${segment} of ${src.dir} at byte offset ${offset}. Replay stopped there rather than skip data; restore the file from a replica or backup.`,
    { segment, offset },
  )
}

export function goneError(dir: string, from: number, firstLsn: number, why: string): WalError {
  return new WalError(
    'WAL_GONE',
    `Entries from LSN ${from} were asked for, but ${why}; the log in ${dir} now starts at LSN ${firstLsn}. Replay from ${firstLsn} (or from 0 for everything retained), and keep a cursor to stop checkpoints deleting what a consumer still needs.`,
    { firstLsn },
  )
}

function readError(err: unknown, what: string, path: string): WalError {
  return ioError(err, what, path, 'read')
}

/**
 * Pairs BEGIN/COMMIT and turns index rows into output: entries (flattened, lsn >= from)
 * or batches (whole, last >= from). A standalone record is a batch of one.
 */
class BatchAssembler {
  private open: Entry[] | undefined
  private first = 0
  private count = 0
  private lastSeen = 0

  constructor(
    private readonly from: number,
    private readonly asBatches: boolean,
  ) {}

  /** Returns false for a record whose LSN goes backwards: a stale copy, not data to yield. */
  push(buf: Buffer, ix: Float64Array, i: number, out: (Entry | Batch)[]): boolean {
    const typeFlags = ix[i + IX_TYPE]
    const type = typeFlags & 0xff
    const lsn = ix[i + IX_LSN]
    if (!lsnInOrder(type, typeFlags >> 8, lsn, this.lastSeen)) return false
    this.lastSeen = lsn
    if (type === TYPE_PUT || type === TYPE_DEL) {
      const p = ix[i + IX_POS] + RECORD_HEADER_SIZE
      const klen = ix[i + IX_AUX]
      const entry: Entry = {
        lsn,
        type: type === TYPE_PUT ? 'put' : 'del',
        key: buf.subarray(p, p + klen),
        value: type === TYPE_PUT ? buf.subarray(p + klen, p + ix[i + IX_LENGTH]) : undefined,
      }
      if ((typeFlags >> 8) & FLAG_BATCH) {
        const open = this.open
        if (open && lsn === this.first + open.length && open.length < this.count) open.push(entry)
        else this.open = undefined // a member with no matching BEGIN: drop it and its batch
      } else {
        this.open = undefined // a standalone record ends any open batch, which is discarded
        if (lsn >= this.from) out.push(this.asBatches ? { first: lsn, last: lsn, entries: [entry] } : entry)
      }
    } else if (type === TYPE_BEGIN) {
      this.open = []
      this.first = lsn
      this.count = ix[i + IX_AUX]
    } else if (type === TYPE_COMMIT) {
      const open = this.open
      this.open = undefined
      const beginLsn = readU64(buf, ix[i + IX_POS] + RECORD_HEADER_SIZE)
      if (open && beginLsn === this.first && ix[i + IX_AUX] === this.count && open.length === this.count && lsn === this.first + this.count - 1) {
        if (lsn < this.from) return true
        if (this.asBatches) out.push({ first: this.first, last: lsn, entries: open })
        else for (const e of open) if (e.lsn >= this.from) out.push(e)
      }
    } else {
      // CHECKPOINT: the writer never puts one inside a batch.
      this.open = undefined
    }
    return true
  }
}

/** Walks segments and chunks; the drivers below do the reads. */
export class ReplayReader {
  private segIndex = -1
  private seg: SegmentRef | undefined
  private fd = -1
  private size = 0 // file size at open, to size reads of segments read to their end
  private pos = 0
  private need = 0
  private zeroCheck = false // reading the rest of a segment that must be all zeros
  private lastSeen = -1 // LSN field of the last record read (the chain check's anchor)
  private started = false
  private failure: WalError | undefined
  private readonly assembler: BatchAssembler
  /** Called when the reader moves to another segment or ends (checkpoint may delete more). */
  advanced: () => void = () => {}

  constructor(
    private readonly src: ReplaySource,
    private readonly from: number,
    asBatches: boolean,
  ) {
    this.assembler = new BatchAssembler(from, asBatches)
  }

  position(): number {
    if (this.segIndex === Number.MAX_SAFE_INTEGER) return Infinity
    return this.seg ? this.seg.firstLsn : 0
  }

  /** The next read to do, or undefined when the log is exhausted. */
  next(): ReadRequest | undefined {
    if (this.failure) throw this.failure
    if (!this.started) {
      this.started = true
      const first = this.src.firstLsn()
      const cp = this.src.checkpointLsn()
      if (first > cp + 1) {
        // The log starts after LSNs that no checkpoint released: its first segments are missing.
        const seg = this.src.segments()[0]
        this.finish()
        throw corrupt(this.src, seg.name, 0, `The first segment continues after LSN ${first - 1}, but the log was checkpointed only up to LSN ${cp}: the segments before it are missing`)
      }
      if (this.from > 0 && this.from < first) {
        this.finish()
        throw goneError(this.src.dir, this.from, first, 'a checkpoint has deleted the entries before it')
      }
    }
    for (;;) {
      if (this.fd < 0 && !this.openNextSegment()) return undefined
      if (this.zeroCheck) return { fd: this.fd, buf: Buffer.allocUnsafe(CHUNK_SIZE), position: this.pos }
      const limit = this.src.limitFor(this.seg!.name)
      if (limit >= 0 && this.pos >= limit) {
        // Caught up with the writer in its current segment, unless it has moved on.
        if (this.isLast()) return this.finish()
        // The writer has moved on: read this segment to its end (limit -1) or leave it.
        if (this.src.limitFor(this.seg!.name) >= 0) this.closeSegment()
        continue
      }
      // A finished segment is read to its end. It may have grown since it was opened (the
      // writer was still appending then), so its size is taken again at the old end.
      if (limit < 0 && this.pos + RECORD_HEADER_SIZE > this.size) this.size = this.fileSize()
      const avail = limit >= 0 ? limit - this.pos : Math.max(this.size - this.pos, 1)
      const want = Math.max(this.need, Math.min(CHUNK_SIZE, avail))
      if (want <= 0) {
        this.closeSegment()
        continue
      }
      return { fd: this.fd, buf: Buffer.allocUnsafe(want), position: this.pos }
    }
  }

  /** Consumes a chunk read for `req`; appends what it completed to `out`. */
  accept(req: ReadRequest, chunk: ScanChunk, out: (Entry | Batch)[]): void {
    if (this.failure) throw this.failure
    const name = this.seg!.name
    const atEof = chunk.bytes < req.buf.length
    if (this.zeroCheck) {
      // The bytes after a zero-filled record boundary: preallocation only if all are zero.
      const got = req.buf.subarray(0, chunk.bytes)
      if (!isZero(got)) throw corrupt(this.src, name, req.position + firstNonZero(got), 'Zeroed bytes before later data')
      this.pos = req.position + chunk.bytes
      if (atEof) this.closeSegment()
      return
    }
    const ix = chunk.index
    for (let i = 0; i < ix.length; i += IX_STRIDE) {
      if (!this.assembler.push(req.buf, ix, i, out))
        throw corrupt(this.src, name, req.position + ix[i + IX_POS], 'Record with an LSN out of order (a stale copy of older data)')
    }
    if (ix.length > 0) this.lastSeen = ix[ix.length - IX_STRIDE + IX_LSN]
    const limit = this.src.limitFor(name)
    this.pos = req.position + chunk.stop
    this.need = 0
    switch (chunk.status) {
      case SCAN_END:
        if (atEof && limit < 0) this.closeSegment()
        break
      case SCAN_NEED_MORE:
        if (atEof) throw corrupt(this.src, name, this.pos, 'Incomplete record')
        this.need = chunk.need
        break
      case SCAN_ZERO:
        if (!atEof && chunk.bytes - chunk.stop < RECORD_HEADER_SIZE) {
          // Zero bytes too few to be a record header, and the file goes on: undecided, read more.
          this.need = RECORD_HEADER_SIZE
          break
        }
        if (limit >= 0 && this.pos < limit) throw corrupt(this.src, name, this.pos, 'Zeroed bytes inside written data')
        if (limit < 0) {
          const rest = req.buf.subarray(chunk.stop, chunk.bytes)
          if (!isZero(rest)) throw corrupt(this.src, name, this.pos + firstNonZero(rest), 'Zeroed bytes before later data')
          if (atEof) this.closeSegment()
          else {
            this.zeroCheck = true
            this.pos = req.position + chunk.bytes
          }
        }
        break
      case SCAN_BAD:
      default:
        throw corrupt(this.src, name, this.pos, 'Invalid record (checksum or header mismatch)')
    }
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

  private isLast(): boolean {
    const segs = this.src.segments()
    return !segs.some((s) => s.firstLsn > this.seg!.firstLsn)
  }

  private finish(): undefined {
    this.closeSegment()
    if (this.segIndex !== Number.MAX_SAFE_INTEGER) {
      this.segIndex = Number.MAX_SAFE_INTEGER
      this.advanced()
    }
    return undefined
  }

  private openNextSegment(): boolean {
    if (this.segIndex === Number.MAX_SAFE_INTEGER) return false
    const segs = this.src.segments()
    let idx: number
    const prev = this.seg
    if (this.segIndex < 0) {
      // Skip segments wholly before `from`: segment i holds LSNs below segment i+1's first.
      idx = 0
      while (idx + 1 < segs.length && segs[idx + 1].firstLsn <= this.from) idx++
    } else {
      idx = prev ? segs.findIndex((s) => s.firstLsn > prev.firstLsn) : -1
    }
    if (idx < 0 || idx >= segs.length) return false
    const seg = segs[idx]
    const path = join(this.src.dir, seg.name)
    let fd: number
    try {
      fd = fs.openSync(path, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.finish()
        throw goneError(this.src.dir, Math.max(this.from, this.lastSeen + 1), this.src.firstLsn(), `segment ${seg.name}, which replay still had to read, was deleted (by a checkpoint in another process)`)
      }
      throw readError(err, 'Opening a segment for replay', path)
    }
    this.segIndex = idx
    this.seg = seg
    this.fd = fd
    this.advanced()
    let h: SegmentHeader | string
    try {
      this.size = fs.fstatSync(fd).size
      const header = Buffer.alloc(SEGMENT_HEADER_SIZE)
      let n = 0
      for (let got = -1; n < SEGMENT_HEADER_SIZE && got !== 0; n += got) got = fs.readSync(fd, header, n, SEGMENT_HEADER_SIZE - n, n)
      h = decodeSegmentHeader(header.subarray(0, n), this.src.backend.crc32c)
    } catch (err) {
      this.closeSegment()
      throw readError(err, 'Reading a segment header for replay', path)
    }
    if (typeof h === 'string') {
      this.closeSegment()
      if (h.startsWith('bad magic'))
        throw new WalError(
          'WAL_CORRUPT',
          `${seg.name} in ${this.src.dir} is named like a segment but is not a fastwal segment (${h}). Move it out of the log directory; if it was a segment, restore it from a replica or backup.`,
          { segment: seg.name, offset: 0 },
        )
      throw corrupt(this.src, seg.name, 0, `Bad segment header (${h})`)
    }
    // The segment chain: each segment continues exactly where the one before it ended,
    // and the first one where the log was checkpointed away.
    if (prev && h.prevLsn !== this.lastSeen) {
      this.closeSegment()
      throw corrupt(this.src, seg.name, 0, `Segment continues after LSN ${h.prevLsn} but the segment before it (${prev.name}) ends at LSN ${this.lastSeen}: a segment is missing or out of place`)
    }
    if (!prev && idx === 0 && h.prevLsn > this.src.checkpointLsn()) {
      this.closeSegment()
      throw corrupt(this.src, seg.name, 0, `The first segment continues after LSN ${h.prevLsn}, but the log was checkpointed only up to LSN ${this.src.checkpointLsn()}: the segments before it are missing`)
    }
    this.lastSeen = h.prevLsn
    this.pos = SEGMENT_HEADER_SIZE
    this.need = 0
    this.zeroCheck = false
    return true
  }

  private fileSize(): number {
    try {
      return fs.fstatSync(this.fd).size
    } catch (err) {
      throw readError(err, 'Measuring a segment for replay', join(this.src.dir, this.seg!.name))
    }
  }

  private closeSegment(): void {
    if (this.fd >= 0) fs.closeSync(this.fd)
    this.fd = -1
  }
}

function isZero(b: Uint8Array): boolean {
  for (let at = 0; at < b.length; at += ZEROS.length) {
    const part = b.subarray(at, Math.min(b.length, at + ZEROS.length))
    if (Buffer.compare(part, ZEROS.subarray(0, part.length)) !== 0) return false
  }
  return true
}

function firstNonZero(b: Uint8Array): number {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return i
  return b.length
}

const ZEROS = Buffer.alloc(64 * 1024)

function replaySync<T extends Entry | Batch>(src: ReplaySource, from: number, asBatches: boolean): Generator<T> {
  const reader = new ReplayReader(src, from, asBatches)
  // Registered now, not at the first next(): a checkpoint made before it keeps what it needs.
  reader.advanced = src.track({ position: () => reader.position(), abort: (err) => reader.close(err) })
  return readAllSync<T>(src, reader)
}

function* readAllSync<T extends Entry | Batch>(src: ReplaySource, reader: ReplayReader): Generator<T> {
  const out: (Entry | Batch)[] = []
  try {
    for (let req = reader.next(); req; req = reader.next()) {
      out.length = 0
      let chunk: ScanChunk
      try {
        chunk = src.backend.readScanSync(req.fd, req.buf, req.position)
      } catch (err) {
        throw readError(err, 'Reading a segment for replay', src.dir)
      }
      reader.accept(req, chunk, out)
      for (let i = 0; i < out.length; i++) {
        reader.check()
        yield out[i] as T
      }
    }
  } finally {
    reader.close()
  }
}

/**
 * The async iterator, written by hand: items of the chunk in hand are returned as
 * already-resolved promises, so a `for await` pays one microtask per entry and one trip
 * to the thread pool per chunk (read + CRC check + index, in the backend).
 */
class ReplayIterator<T extends Entry | Batch> implements AsyncIterableIterator<T> {
  private items: (Entry | Batch)[] = []
  private i = 0
  private readonly reader: ReplayReader
  private flushed = false
  private finished = false
  private failure: unknown
  private pending: Promise<IteratorResult<T>> | undefined
  private readonly onAbort: (() => void) | undefined

  constructor(
    private readonly src: ReplaySource,
    from: number,
    asBatches: boolean,
    private readonly before?: () => Promise<void>,
    private readonly signal?: AbortSignal,
  ) {
    this.reader = new ReplayReader(src, from, asBatches)
    // Registered now, so a checkpoint made before the first next() keeps what it needs.
    this.reader.advanced = src.track({ position: () => this.reader.position(), abort: (err) => this.stop(err) })
    if (signal) {
      this.onAbort = () => this.stop(signal.reason)
      if (signal.aborted) this.onAbort()
      else signal.addEventListener('abort', this.onAbort, { once: true })
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (!this.pending) {
      if (this.failure !== undefined) return Promise.reject(this.failure)
      if (this.i < this.items.length) return Promise.resolve({ value: this.items[this.i++] as T, done: false })
      if (this.finished) return Promise.resolve({ value: undefined, done: true })
    }
    // Calls made while a chunk is being read queue behind it, so results stay in order.
    const p: Promise<IteratorResult<T>> = (this.pending ?? Promise.resolve()).then(() => this.fill())
    this.pending = p
    const clear = () => {
      if (this.pending === p) this.pending = undefined
    }
    p.then(clear, clear)
    return p
  }

  private async fill(): Promise<IteratorResult<T>> {
    if (this.failure !== undefined) throw this.failure
    if (this.finished) return { value: undefined, done: true }
    if (this.i < this.items.length) return { value: this.items[this.i++] as T, done: false }
    try {
      if (!this.flushed) {
        this.flushed = true
        if (this.before) await this.before()
      }
      this.items = []
      this.i = 0
      while (this.items.length === 0) {
        if (this.failure !== undefined) throw this.failure
        if (this.finished) return { value: undefined, done: true }
        const req = this.reader.next()
        if (!req) {
          this.finish()
          return { value: undefined, done: true }
        }
        let chunk: ScanChunk
        try {
          chunk = await this.src.backend.readScan(req.fd, req.buf, req.position)
        } catch (err) {
          throw readError(err, 'Reading a segment for replay', this.src.dir)
        }
        if (this.failure !== undefined) throw this.failure // aborted or closed meanwhile
        if (this.finished) return { value: undefined, done: true } // return() was called meanwhile
        this.reader.accept(req, chunk, this.items)
      }
      return { value: this.items[this.i++] as T, done: false }
    } catch (err) {
      this.finish()
      throw err
    }
  }

  private finish(): void {
    this.finished = true
    this.items = []
    if (this.onAbort) this.signal!.removeEventListener('abort', this.onAbort)
    this.reader.close()
  }

  /** Aborted or the handle closed: later calls reject with `err`; files close once no read is on the pool. */
  private stop(err: unknown): void {
    if (this.failure === undefined) this.failure = err
    this.items = []
    this.i = 0
    if (this.pending) this.pending.then(() => this.finish(), () => this.finish())
    else this.finish()
  }

  /** Ends iteration; a chunk read still on the thread pool finishes before the fd closes. */
  return(): Promise<IteratorResult<T>> {
    this.finished = true
    const done = (): IteratorResult<T> => {
      this.finish()
      return { value: undefined, done: true }
    }
    return this.pending ? this.pending.then(done, done) : Promise.resolve(done())
  }

  [Symbol.asyncIterator](): this {
    return this
  }
}

export function replayEntriesSync(src: ReplaySource, from: number): Generator<Entry> {
  return replaySync<Entry>(src, from, false)
}

export function replayBatchesAsync(src: ReplaySource, from: number, before?: () => Promise<void>, signal?: AbortSignal): AsyncIterableIterator<Batch> {
  return new ReplayIterator<Batch>(src, from, true, before, signal)
}

export function replayEntriesAsync(src: ReplaySource, from: number, before?: () => Promise<void>, signal?: AbortSignal): AsyncIterableIterator<Entry> {
  return new ReplayIterator<Entry>(src, from, false, before, signal)
}
