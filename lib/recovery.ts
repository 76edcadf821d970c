// Finds the end of the log at open, and decides what damage there means (SPEC §2
// "Recovery on open"). Reads only the last segment. The decision is a plan; applying it
// (truncating, syncing) is done by the caller only for writable opens.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import {
  FLAG_BATCH,
  IX_LENGTH,
  IX_LSN,
  IX_MARK,
  IX_POS,
  IX_STRIDE,
  IX_TYPE,
  RECORD_HEADER_SIZE,
  SCAN_END,
  SCAN_NEED_MORE,
  SCAN_ZERO,
  SEGMENT_HEADER_SIZE,
  TYPE_BEGIN,
  TYPE_CHECKPOINT,
  TYPE_COMMIT,
  TYPE_DEL,
  TYPE_PUT,
  decodeSegmentHeader,
  readU64,
} from './format.js'
import type { SegmentRef } from './segments.js'

export type RecoveryMode = 'tolerate-tail' | 'point-in-time' | 'strict'

export interface RecoveryReport {
  mode: string
  truncatedBytes: number
  droppedEntries: number
  droppedBatches: number
}

export interface TailPlan {
  /** The segment the log ends in, or undefined when the log has no usable segment. */
  segment?: SegmentRef
  prevLsn: number // from its header
  /** Where the kept records end; appends continue here. */
  validEnd: number
  /** Bytes of the file that hold data (last non-zero byte + 1); validEnd when clean. */
  dataEnd: number
  /** LSN of the last kept record (or prevLsn). */
  keptLsn: number
  /** Highest LSN seen anywhere in the segment, dropped records included. */
  maxLsn: number
  checkpointLsn: number
  /** Torn segment (short or zeroed header) to delete, for a writable open. */
  deleteSegment?: SegmentRef
  /** point-in-time: whole segments after the first corruption, to delete. */
  dropSegments?: SegmentRef[]
  report: RecoveryReport
}

function corrupt(dir: string, segment: string, offset: number, what: string, mode: RecoveryMode): WalError {
  return new WalError(
    'WAL_CORRUPT',
    `${what} in segment ${segment} of ${dir} at byte offset ${offset}. ` +
      (mode === 'strict'
        ? 'Open with recovery: "tolerate-tail" to remove a torn tail, or "point-in-time" to keep only what precedes the damage.'
        : 'This data was acknowledged as durable, so nothing was deleted. Restore from a replica or backup, or open with recovery: "point-in-time" to drop everything from this offset on.'),
    { segment, offset },
  )
}

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

/**
 * LSN order within a log (FORMAT.md "LSN order"): standalone PUT/DEL and BEGIN take a new,
 * higher LSN; batch members and COMMIT repeat or continue their BEGIN's; a CHECKPOINT
 * carries the current last LSN. A valid record that breaks this is a stale copy.
 */
export function lsnInOrder(type: number, flags: number, lsn: number, lastSeen: number): boolean {
  if (type === TYPE_CHECKPOINT || type === TYPE_COMMIT || flags & FLAG_BATCH) return lsn >= lastSeen
  return lsn > lastSeen
}

/** The record-by-record state of a tail scan: what is kept, and any batch still open. */
export class TailState {
  pos = SEGMENT_HEADER_SIZE // end of the last record seen
  keptLsn: number
  maxLsn: number
  batchStart = -1 // where an open batch's BEGIN starts
  lsnBeforeBatch = 0
  lastSeen: number // LSN field of the previous record
  /** Offset of a record whose LSN goes backwards (a stale copy), or -1. Scanning stops there. */
  violation = -1

  constructor(
    prevLsn: number,
    public checkpointLsn: number,
  ) {
    this.keptLsn = prevLsn
    this.maxLsn = prevLsn
    this.lastSeen = prevLsn
  }

  /** Consumes index rows whose positions are relative to `buf`, which starts at file offset `base`. */
  consume(ix: Float64Array, buf: Uint8Array, base: number): void {
    for (let i = 0; i < ix.length; i += IX_STRIDE) {
      const type = ix[i + IX_TYPE] & 0xff
      const lsn = ix[i + IX_LSN]
      const at = ix[i + IX_POS]
      if (!lsnInOrder(type, ix[i + IX_TYPE] >> 8, lsn, this.lastSeen)) {
        this.violation = base + at
        return
      }
      this.lastSeen = lsn
      if (lsn > this.maxLsn) this.maxLsn = lsn
      if (type === TYPE_BEGIN) {
        if (this.batchStart < 0) this.lsnBeforeBatch = this.keptLsn
        this.batchStart = base + at
      } else if (type === TYPE_COMMIT) {
        this.batchStart = -1
        this.keptLsn = lsn
      } else if (type === TYPE_CHECKPOINT) {
        this.checkpointLsn = Math.max(this.checkpointLsn, readU64(buf, at + RECORD_HEADER_SIZE))
        if (this.batchStart < 0) this.keptLsn = Math.max(this.keptLsn, lsn)
      } else if (!((ix[i + IX_TYPE] >> 8) & FLAG_BATCH)) {
        // A standalone record ends any batch still open: replay discards that batch.
        this.batchStart = -1
        this.keptLsn = lsn
      }
      this.pos = base + at + RECORD_HEADER_SIZE + ix[i + IX_LENGTH]
    }
  }
}

/** A read the tail scanner wants: `length` bytes at `position` of the last segment. */
export interface TailRead {
  position: number
  length: number
}

const TAIL_CHUNK = 4 * 1024 * 1024
const ZEROS = Buffer.alloc(TAIL_CHUNK)

/**
 * The common case of open, in bounded memory: the last segment's records scanned chunk by
 * chunk, then its zero-filled tail checked with memcmp. Returns the plan when the tail is
 * clean, or undefined when there is damage (planTail then reads the damaged region whole).
 * Written as a generator of reads so open and openSync share it (sync and async drivers).
 */
export function* scanCleanTail(seg: SegmentRef, fileSize: number, backend: Backend, mode: RecoveryMode): Generator<TailRead, TailPlan | undefined, Buffer> {
  let size = fileSize
  if (size < SEGMENT_HEADER_SIZE) return undefined
  const headerBytes = yield { position: 0, length: SEGMENT_HEADER_SIZE }
  const header = decodeSegmentHeader(headerBytes, backend.crc32c)
  if (typeof header === 'string') return undefined
  const st = new TailState(header.prevLsn, header.checkpointLsn)
  let need = 0
  for (;;) {
    const at = st.pos
    if (at >= size) break
    const want = Math.min(size - at, Math.max(need, TAIL_CHUNK))
    const buf = yield { position: at, length: want }
    // A short read is the end of the file: it shrank since it was measured (a readOnly
    // open racing the writer's truncation at rotation).
    if (buf.length < want) size = at + buf.length
    const r = backend.scan(buf, 0, buf.length)
    st.consume(r.index, buf, at)
    if (st.violation >= 0) return undefined
    need = 0
    if (r.status === SCAN_END) continue
    if (r.status === SCAN_NEED_MORE && at + buf.length < size) {
      need = r.need
      if (r.stop === 0 && need <= want) return undefined // no progress possible
      continue
    }
    if (r.status !== SCAN_ZERO) return undefined // damage: the slow path decides
    // Zeros: a clean end only if nothing but zeros follows.
    for (let z = st.pos; z < size; ) {
      const len = Math.min(TAIL_CHUNK, size - z)
      const chunk = z === st.pos && st.pos === at + r.stop && st.pos + len <= at + buf.length ? buf.subarray(r.stop, r.stop + len) : yield { position: z, length: len }
      if (Buffer.compare(chunk, ZEROS.subarray(0, chunk.length)) !== 0) return undefined
      if (chunk.length < len) break // the file ends here
      z += len
    }
    break
  }
  if (st.batchStart >= 0) return undefined // a batch without COMMIT: the slow path drops it
  const report: RecoveryReport = { mode, truncatedBytes: 0, droppedEntries: 0, droppedBatches: 0 }
  return { segment: seg, prevLsn: header.prevLsn, validEnd: st.pos, dataEnd: st.pos, keptLsn: st.keptLsn, maxLsn: st.maxLsn, checkpointLsn: st.checkpointLsn, report }
}

export function runTailSync(gen: Generator<TailRead, TailPlan | undefined, Buffer>, fd: number): TailPlan | undefined {
  let step = gen.next(undefined as unknown as Buffer)
  while (!step.done) {
    const { position, length } = step.value
    const buf = Buffer.allocUnsafe(length)
    let n = 0
    for (let got = -1; n < length && got !== 0; n += got) got = fs.readSync(fd, buf, n, length - n, position + n)
    step = gen.next(buf.subarray(0, n))
  }
  return step.value
}

export async function runTailAsync(gen: Generator<TailRead, TailPlan | undefined, Buffer>, fd: number): Promise<TailPlan | undefined> {
  let step = gen.next(undefined as unknown as Buffer)
  while (!step.done) {
    const { position, length } = step.value
    const buf = Buffer.allocUnsafe(length)
    let n = 0
    for (let got = -1; n < length && got !== 0; n += got) {
      const off = n
      got = await new Promise<number>((resolve, reject) => fs.read(fd, buf, off, length - off, position + off, (err, k) => (err ? reject(err) : resolve(k))))
    }
    step = gen.next(buf.subarray(0, n))
  }
  return step.value
}

/**
 * Decides where the log ends. `segments` is sorted; its last usable one is read whole.
 * Throws WAL_CORRUPT when the damage found is not a torn tail under `mode`.
 */
export function planTail(
  dir: string,
  segments: SegmentRef[],
  backend: Backend,
  mode: RecoveryMode,
  readSegment: (path: string) => Buffer = fs.readFileSync,
  older = false, // the segment before a torn last one: it was synced whole, so damage is corruption
): TailPlan {
  const report: RecoveryReport = { mode, truncatedBytes: 0, droppedEntries: 0, droppedBatches: 0 }
  if (segments.length === 0) return { prevLsn: 0, validEnd: 0, dataEnd: 0, keptLsn: 0, maxLsn: 0, checkpointLsn: 0, report }

  const seg = segments[segments.length - 1]
  const path = join(dir, seg.name)
  let buf: Buffer
  try {
    buf = readSegment(path)
  } catch (err) {
    throw ioError(err, 'Reading the last segment', path, 'open')
  }

  // A short or zeroed header is a segment whose creation a crash interrupted: a torn tail.
  const header = decodeSegmentHeader(buf.subarray(0, SEGMENT_HEADER_SIZE), backend.crc32c)
  if (typeof header === 'string') {
    const headerTorn = buf.length < SEGMENT_HEADER_SIZE || buf.subarray(0, SEGMENT_HEADER_SIZE).every((b) => b === 0)
    if (!headerTorn || mode === 'strict') throw corrupt(dir, seg.name, 0, `Bad segment header (${header})`, mode)
    if (lastNonZero(buf, SEGMENT_HEADER_SIZE) > SEGMENT_HEADER_SIZE && mode !== 'point-in-time') {
      // Records behind a missing header cannot be judged; refuse to guess.
      throw corrupt(dir, seg.name, 0, 'Zeroed segment header with data behind it', mode)
    }
    const rest = planTail(dir, segments.slice(0, -1), backend, mode, readSegment, true)
    const floor = Math.max(rest.maxLsn, seg.firstLsn - 1)
    return {
      ...rest,
      maxLsn: floor,
      deleteSegment: seg,
      report: { ...rest.report, mode, truncatedBytes: rest.report.truncatedBytes + lastNonZero(buf, 0) },
    }
  }

  const st = new TailState(header.prevLsn, header.checkpointLsn)
  const r = backend.scan(buf, SEGMENT_HEADER_SIZE, buf.length)
  st.consume(r.index, buf, 0)
  let pos = st.pos
  let keptLsn = st.keptLsn
  const checkpointLsn = st.checkpointLsn
  let maxLsn = st.maxLsn
  const batchStart = st.batchStart
  const lsnBeforeBatch = st.lsnBeforeBatch
  let damage = -1 // where the kept log ends
  let errorAt = -1 // the damaged bytes, for WAL_CORRUPT.offset
  let damageWhat = ''
  if (r.index.length === 0) pos = SEGMENT_HEADER_SIZE
  const stale = st.violation >= 0
  if (stale) pos = st.violation
  // An incomplete record at the end owns every byte to the end of the file.
  const dataEnd = !stale && r.status === SCAN_NEED_MORE ? buf.length : lastNonZero(buf, pos)
  if (!stale && (r.status === SCAN_END || (r.status === SCAN_ZERO && dataEnd === pos))) {
    // Clean end (possibly followed by a zero-filled preallocated region).
  } else {
    damage = errorAt = pos
    damageWhat = stale
      ? 'Record with an LSN out of order (a stale copy of older data)'
      : r.status === SCAN_ZERO
        ? 'Zeroed bytes before later data'
        : r.status === SCAN_NEED_MORE
          ? 'Incomplete record'
          : 'Invalid record (checksum or header mismatch)'
  }
  if (batchStart >= 0) {
    // A batch without its COMMIT is part of the tail: it was never acknowledged.
    if (damage < 0) {
      damageWhat = 'Batch without COMMIT'
      errorAt = batchStart
    }
    damage = batchStart
    keptLsn = lsnBeforeBatch
  }

  if (damage < 0) {
    return { segment: seg, prevLsn: header.prevLsn, validEnd: pos, dataEnd: pos, keptLsn, maxLsn, checkpointLsn, report }
  }

  // Look past the damage: valid records there may prove, by their durable marks, that
  // the damaged bytes had been synced (then it is corruption, not a torn tail).
  let maxMarkAfter = 0
  let droppedEntries = 0
  let droppedBatches = 0
  const countRecords = (index: Float64Array) => {
    for (let i = 0; i < index.length; i += IX_STRIDE) {
      const type = index[i + IX_TYPE] & 0xff
      maxMarkAfter = Math.max(maxMarkAfter, index[i + IX_MARK])
      maxLsn = Math.max(maxLsn, index[i + IX_LSN])
      if (type === TYPE_PUT || type === TYPE_DEL) droppedEntries++
      else if (type === TYPE_BEGIN) droppedBatches++
    }
  }
  // The records of a dropped open batch, between batchStart and the byte damage.
  const head = backend.scan(buf, damage, pos)
  countRecords(head.index)
  if (stale) {
    // The out-of-order run is valid bytes: count it once, then look past where it ends.
    const s = backend.scan(buf, pos, dataEnd)
    countRecords(s.index)
    scanPastDamage(backend, buf, Math.max(s.stop, pos), dataEnd, countRecords)
  } else {
    scanPastDamage(backend, buf, pos, dataEnd, countRecords)
  }

  if (mode === 'strict') throw corrupt(dir, seg.name, errorAt, damageWhat, mode)
  if (mode === 'tolerate-tail' && (older || maxMarkAfter > keptLsn)) throw corrupt(dir, seg.name, errorAt, damageWhat, mode)
  report.truncatedBytes = dataEnd - damage
  report.droppedEntries = droppedEntries
  report.droppedBatches = droppedBatches
  return { segment: seg, prevLsn: header.prevLsn, validEnd: damage, dataEnd, keptLsn, maxLsn, checkpointLsn, report }
}

/**
 * Visits the index of every valid record in buf[from, end) that follows damage at
 * `from`: finds the next record that validates, scans on from it, repeats past each
 * new damage. Byte by byte only where no record validates.
 */
function scanPastDamage(backend: Backend, buf: Uint8Array, from: number, end: number, visit: (index: Float64Array) => void): void {
  let at = from + 1
  while (at < end) {
    const next = backend.findNextRecord(buf, at, end)
    if (next >= end) break
    const s = backend.scan(buf, next, end)
    visit(s.index)
    at = Math.max(s.stop, next) + 1
  }
}

/** Counts the entries and batches of dropped records into `report`; returns their highest LSN. */
export function countDropped(index: Float64Array, report: { droppedEntries: number; droppedBatches: number }): number {
  let maxLsn = 0
  for (let i = 0; i < index.length; i += IX_STRIDE) {
    const type = index[i + IX_TYPE] & 0xff
    maxLsn = Math.max(maxLsn, index[i + IX_LSN])
    if (type === TYPE_PUT || type === TYPE_DEL) report.droppedEntries++
    else if (type === TYPE_BEGIN) report.droppedBatches++
  }
  return maxLsn
}

/**
 * point-in-time: the first corruption may sit in an older segment. This mode alone reads
 * every segment (the other modes read only the last); it returns a plan that cuts the log
 * at the first damage and drops every later segment, or undefined if older segments are clean.
 */
export function planPointInTime(dir: string, segments: SegmentRef[], backend: Backend, tail: TailPlan, readSegment: (path: string) => Buffer = fs.readFileSync): TailPlan | undefined {
  const older = segments.slice(0, -1)
  for (let k = 0; k < older.length; k++) {
    const seg = older[k]
    const buf = readSegment(join(dir, seg.name))
    const header = decodeSegmentHeader(buf.subarray(0, SEGMENT_HEADER_SIZE), backend.crc32c)
    if (typeof header === 'string') continue // a bad header in the middle: handled as damage at 0 below
    const r = backend.scan(buf, SEGMENT_HEADER_SIZE, buf.length)
    const st = new TailState(header.prevLsn, header.checkpointLsn)
    st.consume(r.index, buf, 0)
    const stop = st.violation >= 0 ? st.violation : r.stop
    const clean = st.violation < 0 && (r.status === SCAN_END || (r.status === SCAN_ZERO && lastNonZero(buf, r.stop) === r.stop))
    // Within the kept prefix, a trailing batch without COMMIT is dropped too.
    let keptEnd = stop
    let keptLsn = st.keptLsn
    const checkpointLsn = st.checkpointLsn
    const batchStart = st.batchStart
    const beforeBatch = st.lsnBeforeBatch
    if (clean) continue
    if (batchStart >= 0) {
      keptEnd = batchStart
      keptLsn = beforeBatch
    }
    const report: RecoveryReport = { mode: 'point-in-time', truncatedBytes: 0, droppedEntries: 0, droppedBatches: 0 }
    let maxLsn = Math.max(tail.maxLsn, keptLsn)
    maxLsn = Math.max(maxLsn, countDropped(backend.scan(buf, keptEnd, stop).index, report))
    scanPastDamage(backend, buf, stop, buf.length, (index) => {
      maxLsn = Math.max(maxLsn, countDropped(index, report))
    })
    report.truncatedBytes += buf.length - keptEnd
    const dropped = segments.slice(k + 1)
    for (const d of dropped) {
      const b = readSegment(join(dir, d.name))
      report.truncatedBytes += b.length
      if (b.length > SEGMENT_HEADER_SIZE) maxLsn = Math.max(maxLsn, countDropped(backend.scan(b, SEGMENT_HEADER_SIZE, b.length).index, report))
      maxLsn = Math.max(maxLsn, d.firstLsn - 1)
    }
    return {
      segment: seg,
      prevLsn: header.prevLsn,
      validEnd: keptEnd,
      dataEnd: buf.length,
      keptLsn,
      maxLsn,
      checkpointLsn,
      dropSegments: dropped,
      report,
    }
  }
  return undefined
}
