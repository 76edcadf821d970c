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
    if (lastNonZero(buf, 0) > 0 && mode !== 'point-in-time') {
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
  const dataEnd = lastNonZero(buf, pos)
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
  let at = damage === pos ? pos + 1 : pos
  while (at < dataEnd) {
    const next = backend.findNextRecord(buf, at, dataEnd)
    if (next >= dataEnd) break
    const s = backend.scan(buf, next, dataEnd)
    countRecords(s.index)
    at = Math.max(s.stop, next) + 1
  }

  if (mode === 'strict') throw corrupt(dir, seg.name, damage, damageWhat, mode)
  if (mode === 'tolerate-tail' && maxMarkAfter > keptLsn) throw corrupt(dir, seg.name, damage, damageWhat, mode)
  void checkpointAfter
  report.truncatedBytes = dataEnd - damage
  report.droppedEntries = droppedEntries
  report.droppedBatches = droppedBatches
  return { segment: seg, prevLsn: header.prevLsn, validEnd: damage, dataEnd, keptLsn, maxLsn, checkpointLsn, report }
}
