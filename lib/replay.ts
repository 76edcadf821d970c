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

/** Pairs BEGIN/COMMIT and turns index rows into entries and batches. */
class BatchAssembler {
  private open: Entry[] | undefined
  private first = 0
  private count = 0

  push(buf: Buffer, ix: Float64Array, i: number, out: Batch[]): void {
    const typeFlags = ix[i + IX_TYPE]
    const type = typeFlags & 0xff
    const lsn = ix[i + IX_LSN]
    if (type === TYPE_PUT || type === TYPE_DEL) {
      const p = ix[i + IX_POS] + RECORD_HEADER_SIZE
      const klen = ix[i + IX_AUX]
      const end = p + ix[i + IX_LENGTH]
      const entry: Entry = {
        lsn,
        type: type === TYPE_PUT ? 'put' : 'del',
        key: buf.subarray(p, p + klen),
        value: type === TYPE_PUT ? buf.subarray(p + klen, end) : undefined,
      }
      if ((typeFlags >> 8) & FLAG_BATCH) {
        const open = this.open
        if (open && lsn === this.first + open.length && open.length < this.count) open.push(entry)
        else this.open = undefined // a member with no matching BEGIN: drop it and its batch
      } else {
        this.open = undefined // a standalone record ends any open batch, which is discarded
        out.push({ first: lsn, last: lsn, entries: [entry] })
      }
    } else if (type === TYPE_BEGIN) {
      this.open = []
      this.first = lsn
      this.count = ix[i + IX_AUX]
    } else if (type === TYPE_COMMIT) {
      const open = this.open
      this.open = undefined
      const beginLsn = readU64(buf, ix[i + IX_POS] + RECORD_HEADER_SIZE)
      if (open && beginLsn === this.first && ix[i + IX_AUX] === this.count && open.length === this.count && lsn === this.first + this.count - 1)
        out.push({ first: this.first, last: lsn, entries: open })
    } else {
      // CHECKPOINT: the writer never puts one inside a batch.
      this.open = undefined
    }
  }
}

/** Walks segments and chunks; the drivers below do the reads. */
export class ReplayReader {
  private segIndex = -1
  private seg: SegmentRef | undefined
  private fd = -1
  private pos = 0
  private need = 0
  private readonly assembler = new BatchAssembler()

  constructor(
    private readonly src: ReplaySource,
    private readonly from: number,
  ) {}

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
      const want = Math.max(this.need, Math.min(CHUNK_SIZE, limit >= 0 ? limit - this.pos : CHUNK_SIZE))
      if (want <= 0) {
        this.closeSegment()
        continue
      }
      return { fd: this.fd, buf: Buffer.allocUnsafe(want), position: this.pos }
    }
  }

  /** Consumes a chunk read for `req`; returns the batches it completed. */
  accept(req: ReadRequest, chunk: ScanChunk): Batch[] {
    const out: Batch[] = []
    const ix = chunk.index
    for (let i = 0; i < ix.length; i += IX_STRIDE) this.assembler.push(req.buf, ix, i, out)
    const name = this.seg!.name
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
    if (this.from > 0) return out.filter((b) => b.last >= this.from)
    return out
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

function* entriesOf(batches: Batch[], from: number): Generator<Entry> {
  for (const b of batches) for (const e of b.entries) if (e.lsn >= from) yield e
}

export function* replayBatchesSync(src: ReplaySource, from: number): Generator<Batch> {
  const reader = new ReplayReader(src, from)
  try {
    for (let req = reader.next(); req; req = reader.next()) yield* reader.accept(req, src.backend.readScanSync(req.fd, req.buf, req.position))
  } finally {
    reader.close()
  }
}

export async function* replayBatchesAsync(src: ReplaySource, from: number, before?: () => Promise<void>): AsyncGenerator<Batch> {
  if (before) await before()
  const reader = new ReplayReader(src, from)
  try {
    for (let req = reader.next(); req; req = reader.next()) {
      const chunk = await src.backend.readScan(req.fd, req.buf, req.position)
      yield* reader.accept(req, chunk)
    }
  } finally {
    reader.close()
  }
}

export function* replayEntriesSync(src: ReplaySource, from: number): Generator<Entry> {
  for (const b of replayBatchesSync(src, from)) yield* entriesOf([b], from)
}

export async function* replayEntriesAsync(src: ReplaySource, from: number, before?: () => Promise<void>): AsyncGenerator<Entry> {
  for await (const b of replayBatchesAsync(src, from, before)) for (const e of b.entries) if (e.lsn >= from) yield e
}
