// verify: reads every segment and checks every record, batch and the segment chain,
// through the same record reader and cursor as replay, changing nothing. It reports every
// damaged place (after damage it looks for the next valid record and goes on), and what a
// default open would do about it: the last segment's damage is judged by recovery's own
// rule (a torn tail that open cuts, or corruption it refuses); damage anywhere else is
// corruption.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError } from './errors.js'
import { SEGMENT_HEADER_SIZE, decodeSegmentHeader } from './format.js'
import { RecordCursor, type Batch, type CursorOutput } from './record-cursor.js'
import { SegmentReader, openSegmentBlocking, readSegmentBlocking } from './record-reader.js'
import { planTail } from './recovery.js'
import { findRemnants, hasRemnants } from './repair.js'
import { listSegments, type SegmentRef } from './segments.js'

export interface Finding {
  segment: string
  offset: number
  what: string
  /** What a default (tolerate-tail) open does about it. */
  open: 'cuts it (torn tail)' | 'refuses (WAL_CORRUPT)' | 'replay stops there (WAL_CORRUPT)'
}

export interface VerifyReport {
  dir: string
  segments: number
  entries: number
  batches: number
  firstLsn: number
  lastLsn: number
  /** A writer was running: the last segment's end was read as a write in progress. */
  live: boolean
  findings: Finding[]
}

/**
 * Whether a writer holds the log now: its LOCK names a live process. Then the end of the
 * last segment may be a write in progress, read as such (not reported as damage).
 */
export function writerAlive(dir: string): boolean {
  try {
    const pid = Number(fs.readFileSync(join(dir, 'LOCK'), 'utf8').split('\n')[0])
    if (!Number.isSafeInteger(pid) || pid <= 0) return false
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' // alive, another user's
  }
}

export function verifyLog(dir: string, backend: Backend): VerifyReport {
  const segs = listSegments(dir)
  const live = writerAlive(dir)
  const report: VerifyReport = { dir, segments: segs.length, entries: 0, batches: 0, firstLsn: 0, lastLsn: 0, live, findings: [] }
  let prevLast: number | undefined
  let cursor: RecordCursor | undefined
  const out: CursorOutput = { from: 0, asBatches: true, items: [] }
  segs.forEach((seg, k) => {
    const last = k === segs.length - 1
    const damage = (offset: number, what: string) => report.findings.push({ segment: seg.name, offset, what, open: last ? judgeTail(dir, segs, backend) : 'replay stops there (WAL_CORRUPT)' })
    // Open reads only the last segment, so a broken chain is found by replay; except when the
    // last segment holds no record: then open judges it as the new segment of an interrupted
    // repair (finished, or refused as out of place).
    let chainBreak: string | undefined
    const file = openSegmentBlocking(join(dir, seg.name))
    try {
      const h = decodeSegmentHeader(file.header, backend.crc32c)
      if (typeof h === 'string') {
        damage(0, `Bad segment header (${h})`)
        prevLast = undefined
        return
      }
      if (prevLast !== undefined && h.prevLsn !== prevLast) chainBreak = `Segment continues after LSN ${h.prevLsn} but the segment before it ends at LSN ${prevLast}: a segment is missing or out of place`
      if (k === 0) report.firstLsn = h.prevLsn + 1
      cursor = new RecordCursor(h.prevLsn, h.checkpointLsn, SEGMENT_HEADER_SIZE, out)
      let start = SEGMENT_HEADER_SIZE
      for (;;) {
        const reader = new SegmentReader(file.fd, file.size, cursor, () => -1, () => file.size, 4 * 1024 * 1024, start, () => live && last)
        readSegmentBlocking(reader, backend)
        if (reader.stopped !== 'damage') break
        damage(reader.damage!.offset, reader.damage!.what)
        // Look past it: the next record that validates, and on from there.
        const next = nextValidRecord(file.fd, file.size, reader.damage!.offset + 1, backend)
        if (next < 0) break
        start = next
        cursor.lastSeen = 0 // order is judged afresh after damage
      }
      if (chainBreak !== undefined)
        report.findings.push({ segment: seg.name, offset: 0, what: chainBreak, open: last && cursor.end === SEGMENT_HEADER_SIZE ? judgeEmptyLast(dir, segs, h.prevLsn, backend) : 'replay stops there (WAL_CORRUPT)' })
      if (cursor.batchStart >= 0 && !(live && last)) damage(cursor.batchStart, 'Batch without COMMIT')
      prevLast = cursor.lastSeen
    } finally {
      fs.closeSync(file.fd)
    }
    for (const b of out.items.splice(0) as Batch[]) {
      report.batches++
      report.entries += b.entries.length
    }
  })
  report.lastLsn = prevLast ?? 0
  return report
}

/** The offset of the next record that validates at or after `from`, or -1. */
function nextValidRecord(fd: number, size: number, from: number, backend: Backend): number {
  if (from >= size) return -1
  const buf = Buffer.allocUnsafe(size - from)
  const n = fs.readSync(fd, buf, 0, buf.length, from)
  const at = backend.findNextRecord(buf, 0, n)
  return at >= n ? -1 : from + at
}

/** What a default open does with a last segment that holds no record and breaks the chain. */
function judgeEmptyLast(dir: string, segs: SegmentRef[], prevLsn: number, backend: Backend): Finding['open'] {
  try {
    return hasRemnants(findRemnants(dir, segs, prevLsn, backend)) ? 'cuts it (torn tail)' : 'replay stops there (WAL_CORRUPT)'
  } catch (err) {
    if (err instanceof WalError && err.code === 'WAL_CORRUPT') return 'refuses (WAL_CORRUPT)'
    throw err
  }
}

/** What a default open does about the last segment's damage. */
function judgeTail(dir: string, segs: SegmentRef[], backend: Backend): Finding['open'] {
  try {
    planTail(dir, segs, backend, 'tolerate-tail')
    return 'cuts it (torn tail)'
  } catch (err) {
    if (err instanceof WalError && err.code === 'WAL_CORRUPT') return 'refuses (WAL_CORRUPT)'
    throw err
  }
}
