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
  private readonly assembler: BatchAssembler

  constructor(
    private readonly src: ReplaySource,
    private readonly from: number,
    asBatches: boolean,
  ) {
    this.assembler = new BatchAssembler(from, asBatches)
  }

  /** The next read to do, or undefined when the log is exhausted. */
  next(): ReadRequest | undefined {
    for (;;) {
      if (this.fd < 0 && !this.openNextSegment()) return undefined
      const limit = this.src.limitFor(this.seg!.name)
      if (limit >= 0 && this.pos >= limit) {
        // Caught up with the writer in its current segment, unless it has moved on.
        if (this.isLast()) return this.finish()
        // The writer has moved on: read this segment to its end (limit -1) or leave it.
        if (this.src.limitFor(this.seg!.name) >= 0) this.closeSegment()
        continue
      }
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
    const ix = chunk.index
    const name = this.seg!.name
    for (let i = 0; i < ix.length; i += IX_STRIDE) {
      if (!this.assembler.push(req.buf, ix, i, out))
        throw corrupt(this.src, name, req.position + ix[i + IX_POS], 'Record with an LSN out of order (a stale copy of older data)')
    }
    const atEof = chunk.bytes < req.buf.length
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
        if (limit >= 0 && this.pos < limit) throw corrupt(this.src, name, this.pos, 'Zeroed bytes inside written data')
        if (limit < 0) {
          if (!this.restIsZero(this.pos)) throw corrupt(this.src, name, this.pos, 'Zeroed bytes before later data')
          this.closeSegment()
        }
        break
      case SCAN_BAD:
      default:
        throw corrupt(this.src, name, this.pos, 'Invalid record (checksum or header mismatch)')
    }
  }

  close(): void {
    this.closeSegment()
    this.segIndex = Number.MAX_SAFE_INTEGER
  }

  private isLast(): boolean {
    const segs = this.src.segments()
    return !segs.some((s) => s.firstLsn > this.seg!.firstLsn)
  }

  private finish(): undefined {
    this.closeSegment()
    this.segIndex = Number.MAX_SAFE_INTEGER
    return undefined
  }

  private openNextSegment(): boolean {
    const segs = this.src.segments()
    let idx: number
    if (this.segIndex < 0) {
      // Skip segments wholly before `from`: segment i holds LSNs below segment i+1's first.
      idx = 0
      while (idx + 1 < segs.length && segs[idx + 1].firstLsn <= this.from) idx++
    } else {
      const prev = this.seg
      idx = prev ? segs.findIndex((s) => s.firstLsn > prev.firstLsn) : -1
    }
    if (this.segIndex === Number.MAX_SAFE_INTEGER || idx < 0 || idx >= segs.length) return false
    this.segIndex = idx
    this.seg = segs[idx]
    const path = join(this.src.dir, this.seg.name)
    try {
      this.fd = fs.openSync(path, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        // Deleted by a checkpoint since listing: its records are all checkpointed.
        return this.openNextSegment()
      }
      throw ioError(err, 'Opening a segment for replay', path)
    }
    this.size = fs.fstatSync(this.fd).size
    const header = Buffer.alloc(SEGMENT_HEADER_SIZE)
    const n = fs.readSync(this.fd, header, 0, SEGMENT_HEADER_SIZE, 0)
    const h = decodeSegmentHeader(header.subarray(0, n), this.src.backend.crc32c)
    if (typeof h === 'string') {
      this.closeSegment()
      throw corrupt(this.src, this.seg.name, 0, `Bad segment header (${h})`)
    }
    this.pos = SEGMENT_HEADER_SIZE
    this.need = 0
    return true
  }

  private restIsZero(from: number): boolean {
    const buf = Buffer.allocUnsafe(CHUNK_SIZE)
    for (let pos = from; ; ) {
      const n = fs.readSync(this.fd, buf, 0, buf.length, pos)
      if (n === 0) return true
      for (let i = 0; i < n; i++) if (buf[i] !== 0) return false
      pos += n
    }
  }

  private closeSegment(): void {
    if (this.fd >= 0) fs.closeSync(this.fd)
    this.fd = -1
  }
}

function* replaySync<T extends Entry | Batch>(src: ReplaySource, from: number, asBatches: boolean): Generator<T> {
  const reader = new ReplayReader(src, from, asBatches)
  const out: (Entry | Batch)[] = []
  try {
    for (let req = reader.next(); req; req = reader.next()) {
      out.length = 0
      reader.accept(req, src.backend.readScanSync(req.fd, req.buf, req.position), out)
      for (let i = 0; i < out.length; i++) yield out[i] as T
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
  private reader: ReplayReader | undefined
  private finished = false
  private pending: Promise<IteratorResult<T>> | undefined

  constructor(
    private readonly src: ReplaySource,
    private readonly from: number,
    private readonly asBatches: boolean,
    private readonly before?: () => Promise<void>,
  ) {}

  next(): Promise<IteratorResult<T>> {
    if (!this.pending) {
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
    if (this.finished) return { value: undefined, done: true }
    if (this.i < this.items.length) return { value: this.items[this.i++] as T, done: false }
    try {
      if (!this.reader) {
        if (this.before) await this.before()
        if (this.finished) return { value: undefined, done: true }
        this.reader = new ReplayReader(this.src, this.from, this.asBatches)
      }
      this.items = []
      this.i = 0
      while (this.items.length === 0) {
        const req = this.reader.next()
        if (!req) {
          this.finish()
          return { value: undefined, done: true }
        }
        const chunk = await this.src.backend.readScan(req.fd, req.buf, req.position)
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
    this.reader?.close()
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

export function replayBatchesSync(src: ReplaySource, from: number): Generator<Batch> {
  return replaySync<Batch>(src, from, true)
}

export function replayEntriesSync(src: ReplaySource, from: number): Generator<Entry> {
  return replaySync<Entry>(src, from, false)
}

export function replayBatchesAsync(src: ReplaySource, from: number, before?: () => Promise<void>): AsyncIterableIterator<Batch> {
  return new ReplayIterator<Batch>(src, from, true, before)
}

export function replayEntriesAsync(src: ReplaySource, from: number, before?: () => Promise<void>): AsyncIterableIterator<Entry> {
  return new ReplayIterator<Entry>(src, from, false, before)
}
