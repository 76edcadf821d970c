// Finds the end of the log at open, and decides what damage there means (SPEC §2
// "Recovery on open"). Reads only the last segment. The decision is a plan; applying it
// (truncating, syncing) is done by the caller only for writable opens.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import {
  FLAG_BATCH,
  IX_AUX,
  IX_LENGTH,
  IX_LSN,
  IX_MARK,
  IX_POS,
  IX_STRIDE,
  IX_TYPE,
  RECORD_HEADER_SIZE,
  SCAN_END,
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

function lastNonZero(buf: Uint8Array, from: number): number {
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
 * Decides where the log ends. `segments` is sorted; its last usable one is read whole.
 * Throws WAL_CORRUPT when the damage found is not a torn tail under `mode`.
 */
export function planTail(dir: string, segments: SegmentRef[], backend: Backend, mode: RecoveryMode, readSegment: (path: string) => Buffer = fs.readFileSync): TailPlan {
  const report: RecoveryReport = { mode, truncatedBytes: 0, droppedEntries: 0, droppedBatches: 0 }
  if (segments.length === 0) return { prevLsn: 0, validEnd: 0, dataEnd: 0, keptLsn: 0, maxLsn: 0, checkpointLsn: 0, report }

  const seg = segments[segments.length - 1]
  const path = join(dir, seg.name)
  let buf: Buffer
  try {
    buf = readSegment(path)
  } catch (err) {
    throw ioError(err, 'Reading the last segment', path)
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
    const rest = planTail(dir, segments.slice(0, -1), backend, mode, readSegment)
    const floor = Math.max(rest.maxLsn, seg.firstLsn - 1)
    return {
      ...rest,
      maxLsn: floor,
      deleteSegment: seg,
      report: { ...rest.report, mode, truncatedBytes: rest.report.truncatedBytes + lastNonZero(buf, 0) },
    }
  }

  let pos = SEGMENT_HEADER_SIZE
  let keptLsn = header.prevLsn
  let checkpointLsn = header.checkpointLsn
  let maxLsn = header.prevLsn
  // Open batch: where its BEGIN starts, and the kept LSN before it.
  let batchStart = -1
  let lsnBeforeBatch = 0
  let batchOps = 0
  let damage = -1
  let damageWhat = ''

  const r = backend.scan(buf, pos, buf.length)
  const ix = r.index
  for (let i = 0; i < ix.length; i += IX_STRIDE) {
    const type = ix[i + IX_TYPE] & 0xff
    const lsn = ix[i + IX_LSN]
    const at = ix[i + IX_POS]
    maxLsn = Math.max(maxLsn, lsn)
    if (type === TYPE_BEGIN) {
      if (batchStart < 0) lsnBeforeBatch = keptLsn
      batchStart = at
      batchOps = 0
    } else if (type === TYPE_COMMIT) {
      batchStart = -1
      keptLsn = lsn
    } else if (type === TYPE_CHECKPOINT) {
      checkpointLsn = Math.max(checkpointLsn, readU64(buf, at + RECORD_HEADER_SIZE))
      if (batchStart < 0) keptLsn = Math.max(keptLsn, lsn)
    } else if ((ix[i + IX_TYPE] >> 8) & FLAG_BATCH) {
      batchOps++
    } else {
      // A standalone record ends any batch still open: replay discards that batch.
      batchStart = -1
      keptLsn = lsn
    }
    pos = at + RECORD_HEADER_SIZE + ix[i + IX_LENGTH]
  }
  void batchOps
  // An incomplete record at the end owns every byte to the end of the file.
  const dataEnd = r.status === 1 ? buf.length : lastNonZero(buf, pos)
  if (r.status === SCAN_END || (r.status === SCAN_ZERO && dataEnd === pos)) {
    // Clean end (possibly followed by a zero-filled preallocated region).
  } else {
    damage = pos
    damageWhat = r.status === SCAN_ZERO ? 'Zeroed bytes before later data' : pos + RECORD_HEADER_SIZE > buf.length || r.status === 1 ? 'Incomplete record' : 'Invalid record (checksum or header mismatch)'
  }
  if (batchStart >= 0) {
    // A batch without its COMMIT is part of the tail: it was never acknowledged.
    if (damage < 0) damageWhat = 'Batch without COMMIT'
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
  let checkpointAfter = 0
  const countRecords = (index: Float64Array) => {
    for (let i = 0; i < index.length; i += IX_STRIDE) {
      const type = index[i + IX_TYPE] & 0xff
      maxMarkAfter = Math.max(maxMarkAfter, index[i + IX_MARK])
      maxLsn = Math.max(maxLsn, index[i + IX_LSN])
      if (type === TYPE_PUT || type === TYPE_DEL) droppedEntries++
      else if (type === TYPE_BEGIN) droppedBatches++
      else if (type === TYPE_CHECKPOINT) checkpointAfter = Math.max(checkpointAfter, readU64(buf, index[i + IX_POS] + RECORD_HEADER_SIZE))
      void index[i + IX_AUX]
    }
  }
  // The records of a dropped open batch, between batchStart and the byte damage.
  const head = backend.scan(buf, damage, pos)
  countRecords(head.index)
  scanPastDamage(backend, buf, pos, dataEnd, countRecords)

  if (mode === 'strict') throw corrupt(dir, seg.name, damage, damageWhat, mode)
  if (mode === 'tolerate-tail' && maxMarkAfter > keptLsn) throw corrupt(dir, seg.name, damage, damageWhat, mode)
  void checkpointAfter
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

function countDropped(index: Float64Array, report: RecoveryReport): number {
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
    const clean = r.status === SCAN_END || (r.status === SCAN_ZERO && lastNonZero(buf, r.stop) === r.stop)
    // Within the kept prefix, a trailing batch without COMMIT is dropped too.
    let keptEnd = r.stop
    let keptLsn = header.prevLsn
    let checkpointLsn = header.checkpointLsn
    let batchStart = -1
    let beforeBatch = keptLsn
    const ix = r.index
    for (let i = 0; i < ix.length; i += IX_STRIDE) {
      const type = ix[i + IX_TYPE] & 0xff
      if (type === TYPE_BEGIN) {
        if (batchStart < 0) beforeBatch = keptLsn
        batchStart = ix[i + IX_POS]
      } else if (type === TYPE_COMMIT || !((ix[i + IX_TYPE] >> 8) & FLAG_BATCH)) {
        if (type === TYPE_CHECKPOINT) checkpointLsn = Math.max(checkpointLsn, readU64(buf, ix[i + IX_POS] + RECORD_HEADER_SIZE))
        batchStart = -1
        keptLsn = Math.max(keptLsn, ix[i + IX_LSN])
      }
    }
    if (clean) continue
    if (batchStart >= 0) {
      keptEnd = batchStart
      keptLsn = beforeBatch
    }
    const report: RecoveryReport = { mode: 'point-in-time', truncatedBytes: 0, droppedEntries: 0, droppedBatches: 0 }
    let maxLsn = Math.max(tail.maxLsn, keptLsn)
    maxLsn = Math.max(maxLsn, countDropped(backend.scan(buf, keptEnd, r.stop).index, report))
    scanPastDamage(backend, buf, r.stop, buf.length, (index) => {
      maxLsn = Math.max(maxLsn, countDropped(index, report))
    })
    report.truncatedBytes += buf.length - keptEnd
    const dropped = segments.slice(k + 1)
    for (const d of dropped) {
      const b = readSegment(join(dir, d.name))
      report.truncatedBytes += b.length
      const dr = backend.scan(b, SEGMENT_HEADER_SIZE, b.length)
      maxLsn = Math.max(maxLsn, countDropped(dr.index, report), d.firstLsn - 1)
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
