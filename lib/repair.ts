// Applying what recovery decided, so that a crash at any step of a repair leaves a log
// that the next open finishes repairing, and that never hands out an LSN twice.
//
// A repair that drops LSNs (a torn tail holding records, a point-in-time cut, a segment
// with a torn header) first creates a new, empty segment R and makes it durable:
//  - R's name is above every LSN seen, dropped ones included: the floor that keeps LSNs
//    from being reused lives in a directory entry, not in bytes that the repair removes;
//  - R's header prevLsn is the last LSN kept: the predecessor P must end there.
// Only then is P cut back and are the dropped segments unlinked. The rule that finishes
// an interrupted repair (finishRepair) follows from R alone: when the last segment holds
// no record yet, its predecessor P is the newest segment whose name is at most
// prevLsn + 1, every segment between P and R is a remnant (it can only hold LSNs above
// prevLsn), and P keeps exactly its records up to prevLsn. In a log no repair touched
// this finds nothing to do: each segment's successor is named at most one above the
// last LSN before it and has that LSN as prevLsn.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { FLAG_BATCH, IX_LSN, IX_POS, IX_STRIDE, SEGMENT_HEADER_SIZE, TYPE_BEGIN, decodeSegmentHeader, flagsAt, typeAt } from './format.js'
import { RecordCursor, countDropped, noneDropped } from './record-cursor.js'
import { lastNonZero } from './record-reader.js'
import type { WriterState } from './log-writer.js'
import type { ResolvedOptions } from './options.js'
import type { TailPlan } from './recovery.js'
import { openedSegment } from './writer-segments.js'
import { createSegment, discardSpare, preallocateStep, syncDir, type OpenSegment, type SegmentRef, type Spare } from './segments.js'

/** What finishRepair found: the predecessor's cut, and remnants to remove. */
export interface Remnants {
  predecessor?: SegmentRef
  /** Bytes of the predecessor to keep (its records up to prevLsn). */
  cut: number
  /** The predecessor's size now; > cut means its tail is to be removed. */
  size: number
  /** One past the predecessor's last non-zero byte: zeros alone after the cut are preallocation, not a remnant. */
  dataEnd: number
  /** Segments between the predecessor and the last one: left by an interrupted repair. */
  orphans: SegmentRef[]
  /** What removing them drops, for wal.recovery. */
  droppedBytes: number
  droppedEntries: number
  droppedBatches: number
}

/**
 * For a last segment that holds no record: where its predecessor must end, and which
 * segments an interrupted repair left behind. `prevLsn` is the last segment's header field.
 */
export function findRemnants(dir: string, segments: readonly SegmentRef[], prevLsn: number, backend: Backend): Remnants {
  const last = segments[segments.length - 1]
  const outOfPlace = (why: string) =>
    new WalError(
      'WAL_CORRUPT',
      `Segment ${last.name} of ${dir} holds no record and continues after LSN ${prevLsn}, but ${why}: it is not the new segment of an interrupted repair but out of place. Nothing was changed. Move it out of the directory if it does not belong to this log, or restore the log from a replica or backup.`,
      { segment: last.name, offset: 0 },
    )
  const older = segments.slice(0, -1)
  let p = older.length - 1
  while (p >= 0 && older[p].firstLsn > prevLsn + 1) p--
  const orphans = older.slice(p + 1)
  const dropped = noneDropped()
  let droppedBytes = 0
  // A remnant is a segment the repair dropped: it continues at or after the kept end (or
  // its header never became whole). An older segment that continues before it is not.
  for (const o of orphans) {
    const buf = readWhole(dir, o.name)
    const h = decodeSegmentHeader(buf.subarray(0, SEGMENT_HEADER_SIZE), backend.crc32c)
    if (typeof h !== 'string' && h.prevLsn < prevLsn) throw outOfPlace(`segment ${o.name}, which would be removed with it, continues after LSN ${h.prevLsn}, before that`)
    droppedBytes += buf.length
    if (typeof h !== 'string' && buf.length > SEGMENT_HEADER_SIZE) countDropped(backend.scan(buf, SEGMENT_HEADER_SIZE, buf.length).index, dropped)
  }
  const counts = () => ({ droppedBytes, droppedEntries: dropped.droppedEntries, droppedBatches: dropped.droppedBatches })
  if (p < 0) return { cut: 0, size: 0, dataEnd: 0, orphans, ...counts() }
  const predecessor = older[p]
  const buf = readWhole(dir, predecessor.name)
  const header = decodeSegmentHeader(buf.subarray(0, SEGMENT_HEADER_SIZE), backend.crc32c)
  if (typeof header === 'string')
    throw new WalError('WAL_CORRUPT', `Bad segment header (${header}) in segment ${predecessor.name} of ${dir} at byte offset 0. Restore the file from a replica or backup.`, { segment: predecessor.name, offset: 0 })
  // Records up to prevLsn, in LSN order, ending on a batch boundary.
  const scan = backend.scan(buf, SEGMENT_HEADER_SIZE, buf.length)
  let rows = scan.index.length
  for (let i = 0; i < scan.index.length; i += IX_STRIDE) {
    if (scan.index[i + IX_LSN] > prevLsn) {
      rows = i
      break
    }
  }
  const cursor = new RecordCursor(header.prevLsn, header.checkpointLsn, SEGMENT_HEADER_SIZE)
  const stale = cursor.consume(buf, scan.index, 0, 0, rows)
  let cut = stale >= 0 ? scan.index[stale + IX_POS] : cursor.end
  let kept = cursor.keptLsn
  if (cursor.batchStart >= 0 && cursor.batchStart < cut) {
    cut = cursor.batchStart
    kept = cursor.lsnBeforeBatch
  }
  if (kept !== prevLsn) throw outOfPlace(`the segment before it, ${predecessor.name}, ends at LSN ${kept}`)
  // What follows the cut must be what a repair removes: damage, or a batch that never
  // got its COMMIT. A whole record in order there was kept by every repair.
  if (stale < 0) {
    for (let i = 0; i < scan.index.length; i += IX_STRIDE) {
      if (scan.index[i + IX_POS] < cut) continue
      if (typeAt(scan.index, i) !== TYPE_BEGIN && !(flagsAt(scan.index, i) & FLAG_BATCH)) throw outOfPlace(`${predecessor.name} holds whole records after LSN ${prevLsn} (from byte offset ${cut})`)
    }
  }
  const dataEnd = buf.length > cut ? lastNonZero(buf, cut) : cut
  if (buf.length > cut) {
    droppedBytes += dataEnd - cut
    let first = 0 // index rows are in file order: the ones at or after the cut
    while (first < scan.index.length && scan.index[first + IX_POS] < cut) first += IX_STRIDE
    countDropped(scan.index, dropped, first)
  }
  return { predecessor, cut, size: buf.length, dataEnd, orphans, ...counts() }
}

function readWhole(dir: string, name: string): Buffer {
  const path = join(dir, name)
  try {
    return fs.readFileSync(path)
  } catch (err) {
    throw ioError(err, 'Reading a segment to finish an interrupted repair', path, 'open')
  }
}

/**
 * Whether findRemnants found an interrupted repair to finish. Zeros alone after the
 * predecessor's last record are not one: a zero extension still running when the segment
 * was cut at rotation can leave them.
 */
export function hasRemnants(r: Remnants): boolean {
  return r.orphans.length > 0 || r.dataEnd > r.cut
}

/** Finishes an interrupted repair: cut the predecessor, remove the remnants. */
export function removeRemnants(dir: string, backend: Backend, r: Remnants): void {
  if (r.predecessor && r.size > r.cut) truncateAndSync(dir, r.predecessor.name, r.cut, backend)
  for (const o of r.orphans) unlink(dir, o.name)
  if (r.orphans.length > 0) syncDir(dir, 'open')
}

interface RepairPlan {
  /** The segment whose records are kept up to `validEnd` (undefined: none is). */
  kept?: SegmentRef
  validEnd: number
  /** Last LSN kept, and the highest LSN seen (dropped ones included). */
  keptLsn: number
  maxLsn: number
  checkpointLsn: number
  /** Whole segments to remove (after a point-in-time cut, or with a torn header). */
  drop: SegmentRef[]
}

/**
 * Makes a repair that drops LSNs crash-safe: R first (durable), then the cut, then the
 * removals. Returns R, the segment appends continue in.
 */
function repairWithNewSegment(dir: string, backend: Backend, all: readonly SegmentRef[], plan: RepairPlan, preallocateTo: number, spare?: Spare): OpenSegment {
  const highest = all.reduce((m, s) => Math.max(m, s.firstLsn), 0)
  const firstLsn = Math.max(plan.maxLsn + 1, highest + 1)
  const made = createSegment(dir, backend, firstLsn, { prevLsn: plan.keptLsn, checkpointLsn: Math.min(plan.checkpointLsn, plan.keptLsn) }, preallocateTo, spare)
  try {
    if (plan.kept) truncateAndSync(dir, plan.kept.name, plan.validEnd, backend)
    for (const d of plan.drop) unlink(dir, d.name)
    if (plan.drop.length > 0) syncDir(dir, 'open')
  } catch (err) {
    fs.closeSync(made.fd)
    throw err
  }
  return made
}

/** Shrinks a segment to `size` and syncs it (a no-op when it already has that size). */
function truncateAndSync(dir: string, name: string, size: number, backend: Backend): void {
  const path = join(dir, name)
  let fd: number | undefined
  try {
    fd = fs.openSync(path, 'r+')
    if (fs.fstatSync(fd).size === size) return
    fs.ftruncateSync(fd, size)
    backend.fdatasyncBlocking(fd)
  } catch (err) {
    throw ioError(err, 'Cutting a damaged segment back', path, 'open')
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

function unlink(dir: string, name: string): void {
  const path = join(dir, name)
  try {
    fs.unlinkSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, 'Removing a dropped segment', path, 'open')
  }
}

/** The header of the segment a log continues in when no segment is kept (a new log). */
export function firstSegmentHeader(plan: TailPlan, lastLsn: number): { prevLsn: number; checkpointLsn: number } {
  return { prevLsn: lastLsn, checkpointLsn: Math.min(plan.checkpointLsn, lastLsn) }
}

/**
 * Applies a recovery plan for a writable open and returns where the writer starts. LSNs
 * that are dropped get their floor made durable (as the new segment's name) before the
 * bytes that carried them are removed; otherwise the kept segment is cut and synced
 * first, then dropped segments are removed. Takes ownership of `spare`.
 */
export function applyRecoveryPlan(
  dir: string,
  backend: Backend,
  opts: ResolvedOptions,
  segments: SegmentRef[],
  plan: TailPlan,
  spare: Spare | undefined,
  tailSynced = false,
  /** A new log's first segment, already created (and its directory entry synced) by an async open. */
  created?: OpenSegment,
): WriterState {
  const drop = [...(plan.dropSegments ?? []), ...(plan.deleteSegment ? [plan.deleteSegment] : [])]
  const prealloc = opts.preallocate ? preallocateStep(opts.segmentSize) : 0
  let fd: number | undefined
  try {
    if (plan.maxLsn > plan.keptLsn) {
      const taken = spare
      spare = undefined // repairWithNewSegment owns it now, on failure too
      const made = repairWithNewSegment(dir, backend, segments, { kept: plan.segment, validEnd: plan.validEnd, keptLsn: plan.keptLsn, maxLsn: plan.maxLsn, checkpointLsn: plan.checkpointLsn, drop }, prealloc, taken)
      fd = made.fd
      const gone = new Set(drop)
      const list = segments.filter((s) => !gone.has(s))
      list.push({ name: made.name, firstLsn: made.firstLsn })
      return { segments: list, current: openedSegment(made, SEGMENT_HEADER_SIZE), lastLsn: made.firstLsn - 1, durableLsn: plan.keptLsn, checkpointLsn: plan.checkpointLsn }
    }
    let current: ReturnType<typeof openedSegment> | undefined
    let lastLsn = Math.max(plan.maxLsn, plan.keptLsn)
    if (plan.segment) {
      // Cut first, then remove dropped segments: a crash in between leaves a clean log.
      const seg = plan.segment
      const path = join(dir, seg.name)
      fd = fs.openSync(path, 'r+')
      const size = fs.fstatSync(fd).size
      const cut = plan.validEnd < plan.dataEnd || (!opts.preallocate && size !== plan.validEnd)
      if (cut) fs.ftruncateSync(fd, plan.validEnd)
      // Everything open accepts is durable before the first append (an async open synced the
      // tail on the thread pool already, when there was nothing to cut).
      if (cut || !tailSynced) backend.fdatasyncBlocking(fd)
      // What follows validEnd is zeros (preallocation) or nothing; the writer extends it.
      current = openedSegment({ name: seg.name, path, firstLsn: seg.firstLsn, prevLsn: plan.prevLsn, fd, size: cut ? plan.validEnd : size }, plan.validEnd)
      if (plan.validEnd === SEGMENT_HEADER_SIZE) lastLsn = Math.max(lastLsn, seg.firstLsn - 1)
    }
    for (const d of drop) unlink(dir, d.name)
    if (drop.length > 0) syncDir(dir, 'open')
    const gone = new Set(drop)
    const list = segments.filter((s) => !gone.has(s))
    if (!current) {
      const taken = spare
      spare = undefined // createSegment owns it now, on failure too
      if (created && taken) discardSpare(taken)
      const made = created ?? createSegment(dir, backend, lastLsn + 1, firstSegmentHeader(plan, lastLsn), prealloc, taken)
      fd = made.fd
      list.push({ name: made.name, firstLsn: made.firstLsn })
      current = openedSegment(made, SEGMENT_HEADER_SIZE)
    }
    return { segments: list, current, lastLsn, durableLsn: lastLsn, checkpointLsn: plan.checkpointLsn, spare }
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd)
    if (spare) discardSpare(spare)
    throw err instanceof WalError ? err : ioError(err, 'Repairing the log at open', dir, 'open')
  }
}
