// Finds the end of the log at open and decides what damage there means: a torn tail
// (bytes whose write a crash interrupted, never acknowledged: removed) or corruption
// (bytes proven synced: refused, or cut under 'point-in-time'). Reads only the last
// segment, except under 'point-in-time'. The result is a plan; repair.ts applies it.
//
// The common case, a clean tail, is read by the record reader in chunks (on the thread
// pool for open()). Only when that finds damage is the damaged segment read whole, to
// look past the damage for records that prove it was synced.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { IX_POS, SCAN_END, SCAN_NEED_MORE, SCAN_ZERO, SEGMENT_HEADER_SIZE, decodeSegmentHeader, type SegmentHeader } from './format.js'
import { RecordCursor, countDropped, noneDropped, type DroppedRecords } from './record-cursor.js'
import { SegmentReader, lastNonZero, openSegment, openSegmentBlocking, readSegment, readSegmentBlocking, type OpenedSegment } from './record-reader.js'
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

const TAIL_CHUNK = 4 * 1024 * 1024

/**
 * The plan for a segment whose records end cleanly (no damage, no batch without COMMIT),
 * or undefined: then planTail reads it whole and decides.
 */
function cleanPlan(seg: SegmentRef, file: OpenedSegment, backend: Backend, mode: RecoveryMode, read: (r: SegmentReader) => void | Promise<void>): TailPlan | undefined | Promise<TailPlan | undefined> {
  const header = decodeSegmentHeader(file.header, backend.crc32c)
  if (typeof header === 'string') return undefined
  const cursor = new RecordCursor(header.prevLsn, header.checkpointLsn, SEGMENT_HEADER_SIZE)
  // The size is measured once: a file that shrinks meanwhile ends at the short read.
  const reader = new SegmentReader(file.fd, file.size, cursor, () => -1, () => file.size, TAIL_CHUNK, SEGMENT_HEADER_SIZE, undefined, true)
  const done = (): TailPlan | undefined => {
    if (reader.stopped !== 'end' || cursor.batchStart >= 0) return undefined
    const report: RecoveryReport = { mode, truncatedBytes: 0, droppedEntries: 0, droppedBatches: 0 }
    return { segment: seg, prevLsn: header.prevLsn, validEnd: cursor.end, dataEnd: cursor.end, keptLsn: cursor.keptLsn, maxLsn: cursor.maxLsn, checkpointLsn: cursor.checkpointLsn, report }
  }
  const p = read(reader)
  return p instanceof Promise ? p.then(done) : done()
}

/** The clean-tail plan of the last segment, read on the calling thread. */
export function cleanTailBlocking(dir: string, seg: SegmentRef, backend: Backend, mode: RecoveryMode): TailPlan | undefined {
  const path = join(dir, seg.name)
  let file: OpenedSegment
  try {
    file = openSegmentBlocking(path)
  } catch (err) {
    throw ioError(err, 'Reading the last segment', path, 'open')
  }
  try {
    return cleanPlan(seg, file, backend, mode, (r) => readSegmentBlocking(r, backend)) as TailPlan | undefined
  } catch (err) {
    throw err instanceof WalError ? err : ioError(err, 'Reading the last segment', path, 'open')
  } finally {
    fs.closeSync(file.fd)
  }
}

/** The clean-tail plan of the last segment, read on the thread pool. */
export async function cleanTail(dir: string, seg: SegmentRef, backend: Backend, mode: RecoveryMode): Promise<TailPlan | undefined> {
  const path = join(dir, seg.name)
  let file: OpenedSegment
  try {
    file = await openSegment(path, backend)
  } catch (err) {
    throw ioError(err, 'Reading the last segment', path, 'open')
  }
  try {
    return await cleanPlan(seg, file, backend, mode, (r) => readSegment(r, backend))
  } catch (err) {
    throw err instanceof WalError ? err : ioError(err, 'Reading the last segment', path, 'open')
  } finally {
    fs.closeSync(file.fd)
  }
}

/** Reads a segment's records whole into a cursor; `stale` is the offset of a record out of LSN order, or -1. */
function readWhole(buf: Buffer, header: SegmentHeader, backend: Backend): { cursor: RecordCursor; scan: ReturnType<Backend['scan']>; stale: number } {
  const cursor = new RecordCursor(header.prevLsn, header.checkpointLsn, SEGMENT_HEADER_SIZE)
  const scan = backend.scan(buf, SEGMENT_HEADER_SIZE, buf.length)
  const row = cursor.consume(buf, scan.index, 0)
  return { cursor, scan, stale: row >= 0 ? scan.index[row + IX_POS] : -1 }
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
  readFile: (path: string) => Buffer = fs.readFileSync,
  older = false, // the segment before a torn last one: it was synced whole, so damage is corruption
): TailPlan {
  const report: RecoveryReport = { mode, truncatedBytes: 0, droppedEntries: 0, droppedBatches: 0 }
  if (segments.length === 0) return { prevLsn: 0, validEnd: 0, dataEnd: 0, keptLsn: 0, maxLsn: 0, checkpointLsn: 0, report }

  const seg = segments[segments.length - 1]
  const path = join(dir, seg.name)
  let buf: Buffer
  try {
    buf = readFile(path)
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
    const rest = planTail(dir, segments.slice(0, -1), backend, mode, readFile, true)
    const floor = Math.max(rest.maxLsn, seg.firstLsn - 1)
    return {
      ...rest,
      maxLsn: floor,
      deleteSegment: seg,
      report: { ...rest.report, mode, truncatedBytes: rest.report.truncatedBytes + lastNonZero(buf, 0) },
    }
  }

  const { cursor, scan: r, stale: staleAt } = readWhole(buf, header, backend)
  let keptLsn = cursor.keptLsn
  const checkpointLsn = cursor.checkpointLsn
  let maxLsn = cursor.maxLsn
  const batchStart = cursor.batchStart
  const stale = staleAt >= 0
  let pos = stale ? staleAt : cursor.end
  let damage = -1 // where the kept log ends
  let errorAt = -1 // the damaged bytes, for WAL_CORRUPT.offset
  let damageWhat = ''
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
    keptLsn = cursor.lsnBeforeBatch
  }

  if (damage < 0) {
    return { segment: seg, prevLsn: header.prevLsn, validEnd: pos, dataEnd: pos, keptLsn, maxLsn, checkpointLsn, report }
  }

  // Look past the damage: valid records there may prove, by their durable marks, that
  // the damaged bytes had been synced (then it is corruption, not a torn tail).
  const after = noneDropped()
  // The records of a dropped open batch, between batchStart and the byte damage.
  countDropped(backend.scan(buf, damage, pos).index, after)
  if (stale) {
    // The out-of-order run is valid bytes: count it once, then look past where it ends.
    const s = backend.scan(buf, pos, dataEnd)
    countDropped(s.index, after)
    scanPastDamage(backend, buf, Math.max(s.stop, pos), dataEnd, after)
  } else {
    scanPastDamage(backend, buf, pos, dataEnd, after)
  }
  maxLsn = Math.max(maxLsn, after.maxLsn)

  if (mode === 'strict') throw corrupt(dir, seg.name, errorAt, damageWhat, mode)
  if (mode === 'tolerate-tail' && (older || after.maxMark > keptLsn)) throw corrupt(dir, seg.name, errorAt, damageWhat, mode)
  report.truncatedBytes = dataEnd - damage
  report.droppedEntries = after.droppedEntries
  report.droppedBatches = after.droppedBatches
  return { segment: seg, prevLsn: header.prevLsn, validEnd: damage, dataEnd, keptLsn, maxLsn, checkpointLsn, report }
}

/**
 * Counts every valid record in buf[from, end) that follows damage at
 * `from`: finds the next record that validates, scans on from it, repeats past each
 * new damage. Byte by byte only where no record validates.
 */
function scanPastDamage(backend: Backend, buf: Uint8Array, from: number, end: number, into: DroppedRecords): void {
  let at = from + 1
  while (at < end) {
    const next = backend.findNextRecord(buf, at, end)
    if (next >= end) break
    const s = backend.scan(buf, next, end)
    countDropped(s.index, into)
    at = Math.max(s.stop, next) + 1
  }
}

/**
 * point-in-time: the first corruption may sit in an older segment. This mode alone reads
 * every segment (the other modes read only the last); it returns a plan that cuts the log
 * at the first damage and drops every later segment, or undefined if older segments are clean.
 */
export function planPointInTime(dir: string, segments: SegmentRef[], backend: Backend, tail: TailPlan, readFile: (path: string) => Buffer = fs.readFileSync): TailPlan | undefined {
  const older = segments.slice(0, -1)
  for (let k = 0; k < older.length; k++) {
    const seg = older[k]
    const buf = readFile(join(dir, seg.name))
    const header = decodeSegmentHeader(buf.subarray(0, SEGMENT_HEADER_SIZE), backend.crc32c)
    if (typeof header === 'string') continue // a bad header in the middle: handled as damage at 0 below
    const { cursor, scan: r, stale } = readWhole(buf, header, backend)
    const stop = stale >= 0 ? stale : r.stop
    const clean = stale < 0 && (r.status === SCAN_END || (r.status === SCAN_ZERO && lastNonZero(buf, r.stop) === r.stop))
    if (clean) continue
    // Within the kept prefix, a trailing batch without COMMIT is dropped too.
    let keptEnd = stop
    let keptLsn = cursor.keptLsn
    const checkpointLsn = cursor.checkpointLsn
    if (cursor.batchStart >= 0) {
      keptEnd = cursor.batchStart
      keptLsn = cursor.lsnBeforeBatch
    }
    const dropped = noneDropped()
    countDropped(backend.scan(buf, keptEnd, stop).index, dropped)
    scanPastDamage(backend, buf, stop, buf.length, dropped)
    let truncatedBytes = buf.length - keptEnd
    const later = segments.slice(k + 1)
    let maxLsn = Math.max(tail.maxLsn, keptLsn)
    for (const d of later) {
      const b = readFile(join(dir, d.name))
      truncatedBytes += b.length
      if (b.length > SEGMENT_HEADER_SIZE) countDropped(backend.scan(b, SEGMENT_HEADER_SIZE, b.length).index, dropped)
      maxLsn = Math.max(maxLsn, d.firstLsn - 1)
    }
    maxLsn = Math.max(maxLsn, dropped.maxLsn)
    const report: RecoveryReport = { mode: 'point-in-time', truncatedBytes, droppedEntries: dropped.droppedEntries, droppedBatches: dropped.droppedBatches }
    return {
      segment: seg,
      prevLsn: header.prevLsn,
      validEnd: keptEnd,
      dataEnd: buf.length,
      keptLsn,
      maxLsn,
      checkpointLsn,
      dropSegments: later,
      report,
    }
  }
  return undefined
}
