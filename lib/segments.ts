// Segment files on disk: listing, creating, syncing the directory. The hot path (writes,
// syncs, reads of records) goes through the backend; this is the rarer bookkeeping.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { ioError } from './errors.js'
import { SEGMENT_HEADER_SIZE, encodeSegmentHeader, parseSegmentName, segmentName, type SegmentHeader } from './format.js'

export interface SegmentRef {
  name: string
  firstLsn: number
}

export function listSegments(dir: string): SegmentRef[] {
  let names: string[]
  try {
    names = fs.readdirSync(dir)
  } catch (err) {
    throw ioError(err, 'Listing the WAL directory', dir)
  }
  const out: SegmentRef[] = []
  for (const name of names) {
    const firstLsn = parseSegmentName(name)
    if (firstLsn !== undefined) out.push({ name, firstLsn })
  }
  return out.sort((a, b) => a.firstLsn - b.firstLsn)
}

/** Makes directory entries (created, renamed or deleted files) durable. */
export function syncDir(dir: string): void {
  if (process.platform === 'win32') return // NTFS journals metadata; directories cannot be opened for fsync
  let fd: number | undefined
  try {
    fd = fs.openSync(dir, 'r')
    fs.fsyncSync(fd)
  } catch (err) {
    throw ioError(err, 'Syncing the WAL directory', dir)
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

export interface OpenSegment {
  name: string
  path: string
  fd: number
  firstLsn: number
  prevLsn: number
}

/**
 * Creates a segment: header written, optionally sized to `preallocateTo`, file synced and
 * directory synced, so that once this returns the new (empty) segment survives a crash.
 */
export function createSegment(dir: string, backend: Backend, firstLsn: number, header: SegmentHeader, preallocateTo: number): OpenSegment {
  const name = segmentName(firstLsn)
  const path = join(dir, name)
  let fd: number | undefined
  try {
    fd = fs.openSync(path, 'w+')
    backend.writeSync(fd, encodeSegmentHeader(header, backend.crc32c), 0, SEGMENT_HEADER_SIZE, 0)
    if (preallocateTo > SEGMENT_HEADER_SIZE) fs.ftruncateSync(fd, preallocateTo)
    backend.syncSync(fd)
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd)
    throw ioError(err, 'Creating a segment', path)
  }
  syncDir(dir)
  return { name, path, fd, firstLsn, prevLsn: header.prevLsn }
}
