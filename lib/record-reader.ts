// The record reader: reads one segment file in chunks through the backend's readScan
// (read + CRC check + index in one call, on the thread pool for the promise form) and
// feeds every whole valid record to a RecordCursor. It decides where the records end:
//  - a clean end: the file ends on a record boundary, or only zeros follow the last record
//    (a preallocated tail);
//  - the writer's limit: bytes past it may not be written yet;
//  - damage: a bad or incomplete record, zeros before later data, or a record out of LSN
//    order. Judging damage (torn tail or corruption) is recovery's job, not the reader's.
// A segment a writer may still be appending to, with no byte limit known (a readOnly
// handle's last segment), is read "live": zeros, an incomplete or a bad record there are
// where the written bytes end for now, not damage; resume() reads on from there later.
// The reader is a state machine (next() says what to read, accept() takes it), so the
// blocking and the promise drivers below share every decision.
import * as fs from 'node:fs'
import type { Backend, NonZero, ScanChunk } from './backend.js'
import { firstNonZero } from './bytes.js'
import { IX_LSN, IX_MARK, IX_POS, IX_STRIDE, RECORD_HEADER_SIZE, SCAN_END, SCAN_NEED_MORE, SCAN_ZERO, SEGMENT_HEADER_SIZE } from './format.js'
import type { RecordCursor } from './record-cursor.js'

export interface ReadRequest {
  fd: number
  buf: Buffer
  position: number
  /** Find the first non-zero byte from `position` to the end of the file instead (buf unused). */
  zeros?: boolean
}

/** What a read request gets: records scanned, or, for `zeros`, where the zeros end. */
export type ReadResult = ScanChunk | NonZero

/** Does `req` on the calling thread. */
export function readBlocking(backend: Backend, req: ReadRequest): ReadResult {
  return req.zeros ? backend.findNonZeroBlocking(req.fd, req.position) : backend.readScanBlocking(req.fd, req.buf, req.position)
}

/** Does `req` on the thread pool. */
export function read(backend: Backend, req: ReadRequest): Promise<ReadResult> {
  return req.zeros ? backend.findNonZero(req.fd, req.position) : backend.readScan(req.fd, req.buf, req.position)
}

const NO_BYTES = Buffer.alloc(0)

export interface Damage {
  /** File offset of the damaged bytes. */
  offset: number
  what: string
}

/**
 * Why the reader stopped: see the file comment. 'limit' (the byte limit, or the cursor's
 * LSN limit) is not final: next() checks the limits again; 'end' of a live segment is
 * ended by resume().
 */
export type ReaderStop = 'end' | 'limit' | 'damage'

export class SegmentReader {
  /** File offset up to which the records were consumed (or checked to be zeros). */
  pos: number
  stopped: ReaderStop | undefined
  damage: Damage | undefined
  private need = 0
  private zeroCheck = false // reading the rest of a segment that must be all zeros
  private heldLsn = 0 // LSN of a record the cursor's LSN limit held back
  private liveRead = false // the read in flight was issued while the segment was read live
  /** The last 'end' was the end of a live segment's written bytes, not of the file. */
  endedLive = false
  // Chunks start small and grow while records fill them: a log of a few records reads a few
  // KiB, not a whole chunk of zeros (fresh memory costs a page fault per 4 KiB touched).
  private chunk: number
  private scratchBuf: Buffer | undefined

  /**
   * `limit()` gives the bytes known to hold whole records, or -1 to read to the end of
   * the file; `measure()` the file's size now (a finished segment may have grown since
   * `size` was taken).
   */
  constructor(
    readonly fd: number,
    private size: number,
    private readonly cursor: RecordCursor,
    private readonly limit: () => number,
    private readonly measure: () => number,
    private readonly chunkSize: number,
    start = SEGMENT_HEADER_SIZE,
    /** Whether the segment is read live (see the file comment). */
    private readonly live: () => boolean = () => false,
    /** Nothing the cursor emits outlives the next read: one buffer serves every chunk. */
    private readonly reuse = false,
  ) {
    this.pos = start
    this.chunk = Math.min(chunkSize, FIRST_CHUNK)
  }

  private buffer(size: number): Buffer {
    if (!this.reuse) return Buffer.allocUnsafe(size)
    if (!this.scratchBuf || this.scratchBuf.length < size) this.scratchBuf = Buffer.allocUnsafe(size)
    return this.scratchBuf.subarray(0, size)
  }

  /** After a live 'end': read on from where the records ended, once more is written. */
  resume(): void {
    if (this.stopped === 'end') this.stopped = undefined
    this.endedLive = false
  }

  /** The next read to do, or undefined when stopped (see `stopped`). */
  next(): ReadRequest | undefined {
    if (this.stopped === 'end' || this.stopped === 'damage') return undefined
    this.stopped = undefined
    if (this.heldLsn > 0) {
      if (this.heldLsn > this.cursor.lsnLimit) {
        this.stopped = 'limit'
        return undefined
      }
      this.heldLsn = 0
    }
    // The rest of the file must be zeros: checked in one call, not chunk by chunk.
    if (this.zeroCheck) return { fd: this.fd, buf: NO_BYTES, position: this.pos, zeros: true }
    const limit = this.limit()
    if (limit >= 0 && this.pos >= limit) {
      this.stopped = 'limit'
      return undefined
    }
    // Live or not is decided when the read is issued: the segment may stop being the last
    // one (another reader listed a successor) before the chunk comes back.
    this.liveRead = limit < 0 && this.live()
    if (limit < 0 && this.pos + RECORD_HEADER_SIZE > this.size) this.size = this.measure()
    const avail = limit >= 0 ? limit - this.pos : Math.max(this.size - this.pos, 1)
    // Live, most of a preallocated file is zeros not yet written: ask for little at a time.
    const chunk = this.liveRead ? Math.min(this.chunk, LIVE_CHUNK) : this.chunk
    const want = Math.max(this.need, Math.min(chunk, avail))
    return { fd: this.fd, buf: this.buffer(want), position: this.pos }
  }

  /** Takes the chunk read for `req`. A chunk shorter than asked for is the end of the file. */
  accept(req: ReadRequest, result: ReadResult): void {
    if (req.zeros) {
      const z = result as NonZero
      if (z.at >= 0) return this.fail(z.at, 'Zeroed bytes before later data')
      this.pos = z.end
      this.stopped = 'end'
      return
    }
    const chunk = result as ScanChunk
    const atEof = chunk.bytes < req.buf.length
    const ix = chunk.index
    const row = this.cursor.consume(req.buf, ix, req.position)
    if (row >= 0) {
      if (this.cursor.stoppedBy === 'stale') return this.fail(req.position + ix[row + IX_POS], 'Record with an LSN out of order (a stale copy of older data)')
      // Held back by the LSN limit: read again from this record once the limit has risen.
      // The held-back records' durable marks still count (they may raise the limit).
      for (let j = row; j < ix.length; j += IX_STRIDE) if (ix[j + IX_MARK] > this.cursor.maxMark) this.cursor.maxMark = ix[j + IX_MARK]
      this.pos = req.position + ix[row + IX_POS]
      this.need = 0
      this.heldLsn = ix[row + IX_LSN]
      this.stopped = 'limit'
      return
    }
    const limit = this.limit()
    this.pos = req.position + chunk.stop
    this.need = 0
    if (chunk.status !== SCAN_ZERO && !atEof && this.chunk < this.chunkSize) this.chunk = Math.min(this.chunkSize, this.chunk * 4)
    switch (chunk.status) {
      case SCAN_END:
        if (atEof && limit < 0) {
          this.stopped = 'end'
          this.endedLive = this.liveRead
        }
        return
      case SCAN_NEED_MORE:
        if (atEof) return this.tail(this.pos, 'Incomplete record')
        this.need = chunk.need
        // Records large next to the chunk: chunks of four such records (up to 4x the usual
        // size), or every record cut at a chunk's end is read twice.
        this.chunk = Math.max(this.chunk, Math.min(4 * this.chunkSize, 4 * chunk.need))
        return
      case SCAN_ZERO: {
        if (!atEof && chunk.bytes - chunk.stop < RECORD_HEADER_SIZE) {
          // Zero bytes too few to be a record header, and the file goes on: read more.
          this.need = RECORD_HEADER_SIZE
          return
        }
        if (limit >= 0) {
          if (this.pos < limit) this.fail(this.pos, 'Zeroed bytes inside written data')
          return
        }
        if (this.liveRead) {
          this.stopped = 'end' // not written yet
          this.endedLive = true
          return
        }
        const rest = req.buf.subarray(chunk.stop, chunk.bytes)
        const nz = firstNonZero(rest)
        if (nz < rest.length) return this.fail(this.pos + nz, 'Zeroed bytes before later data')
        if (atEof) this.stopped = 'end'
        else {
          this.zeroCheck = true
          this.pos = req.position + chunk.bytes
        }
        return
      }
      default:
        return this.tail(this.pos, 'Invalid record (checksum or header mismatch)')
    }
  }

  /** Damage where a live segment's written bytes end is only the end for now (a write in progress). */
  private tail(offset: number, what: string): void {
    if (this.liveRead) {
      this.stopped = 'end'
      this.endedLive = true
    } else this.fail(offset, what)
  }

  private fail(offset: number, what: string): void {
    this.stopped = 'damage'
    this.damage = { offset, what }
  }
}

/** Reads the segment to where the reader stops, on the calling thread. */
export function readSegmentBlocking(reader: SegmentReader, backend: Backend): void {
  for (let req = reader.next(); req; req = reader.next()) reader.accept(req, readBlocking(backend, req))
}

/** Reads the segment to where the reader stops, each chunk on the thread pool. */
export async function readSegment(reader: SegmentReader, backend: Backend): Promise<void> {
  for (let req = reader.next(); req; req = reader.next()) reader.accept(req, await read(backend, req))
}

/** A segment file opened for reading: its size then, and its header bytes (fewer if the file is shorter). */
export interface OpenedSegment {
  fd: number
  size: number
  header: Buffer
}

/** Opens `path` and reads its header on the calling thread. */
export function openSegmentBlocking(path: string): OpenedSegment {
  const fd = fs.openSync(path, 'r')
  try {
    const size = fs.fstatSync(fd).size
    const header = Buffer.alloc(SEGMENT_HEADER_SIZE)
    let n = 0
    for (let got = -1; n < SEGMENT_HEADER_SIZE && got !== 0; n += got) got = fs.readSync(fd, header, n, SEGMENT_HEADER_SIZE - n, n)
    return { fd, size, header: header.subarray(0, n) }
  } catch (err) {
    fs.closeSync(fd)
    throw err
  }
}

/** openSegmentBlocking on the thread pool (the header is read through readScan). */
export async function openSegment(path: string, backend: Backend): Promise<OpenedSegment> {
  const fd = await new Promise<number>((resolve, reject) => fs.open(path, 'r', (err, f) => (err ? reject(err) : resolve(f))))
  try {
    const size = await new Promise<number>((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st.size))))
    const header = Buffer.alloc(SEGMENT_HEADER_SIZE)
    const got = await backend.readScan(fd, header, 0)
    return { fd, size, header: header.subarray(0, got.bytes) }
  } catch (err) {
    fs.closeSync(fd)
    throw err
  }
}

const LIVE_CHUNK = 64 * 1024
const FIRST_CHUNK = 64 * 1024

/** One past the last non-zero byte of buf at or after `from` (`from` if none). */
export function lastNonZero(buf: Uint8Array, from: number): number {
  const CHUNK = 65536
  let end = buf.length
  while (end > from) {
    const start = Math.max(from, end - CHUNK)
    for (let i = end - 1; i >= start; i--) if (buf[i] !== 0) return i + 1
    end = start
  }
  return from
}
