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
 * A zero-filled file waiting to become the next segment. Written zeros (not a sparse
 * ftruncate) mean later record writes change neither the block map nor the file size, so
 * each fdatasync has only data to flush: about 1.75x the commit rate on an ext4 virtio disk.
 */
export interface Spare {
  path: string
  fd: number
  size: number
}

let spareCounter = 0

/**
 * Each preparation gets its own name, so a closed writer whose zero fill is still running
 * can never touch the file of the next writer on the same directory.
 */
function spareName(): string {
  return `prealloc-${process.pid}-${++spareCounter}.tmp`
}

export function isSpareName(name: string): boolean {
  return /^prealloc(-[0-9]+-[0-9]+)?\.tmp$/.test(name)
}

export async function prepareSpare(dir: string, backend: Backend, size: number): Promise<Spare> {
  const path = join(dir, spareName())
  // A plain fd (not a FileHandle, which would close itself when garbage-collected).
  const fd = await new Promise<number>((resolve, reject) => fs.open(path, 'w+', (err, f) => (err ? reject(err) : resolve(f))))
  try {
    await backend.zeroFill(fd, 0, size)
    await backend.sync(fd)
  } catch (err) {
    fs.closeSync(fd)
    fs.rmSync(path, { force: true })
    throw err
  }
  return { path, fd, size }
}

export function prepareSpareSync(dir: string, backend: Backend, size: number): Spare {
  const path = join(dir, spareName())
  const fd = fs.openSync(path, 'w+')
  try {
    backend.zeroFillSync(fd, 0, size)
    backend.syncSync(fd)
  } catch (err) {
    fs.closeSync(fd)
    fs.rmSync(path, { force: true })
    throw err
  }
  return { path, fd, size }
}

export function discardSpare(spare: Spare): void {
  fs.closeSync(spare.fd)
  fs.rmSync(spare.path, { force: true })
}

/**
 * Creates a segment: header written, file synced, directory synced, so that once this
 * returns the new (empty) segment survives a crash. With a spare, the spare is renamed
 * into place; otherwise the file is sized to `preallocateTo` without writing zeros.
 */
export function createSegment(dir: string, backend: Backend, firstLsn: number, header: SegmentHeader, preallocateTo: number, spare?: Spare): OpenSegment {
  const name = segmentName(firstLsn)
  const path = join(dir, name)
  let fd: number | undefined
  try {
    fd = spare ? spare.fd : fs.openSync(path, 'w+')
    backend.writeSync(fd, encodeSegmentHeader(header, backend.crc32c), 0, SEGMENT_HEADER_SIZE, 0)
    if (!spare && preallocateTo > SEGMENT_HEADER_SIZE) fs.ftruncateSync(fd, preallocateTo)
    backend.syncSync(fd)
    if (spare) fs.renameSync(spare.path, path)
  } catch (err) {
    // The spare, if any, is consumed either way: its fd is closed and its file removed.
    if (fd !== undefined) fs.closeSync(fd)
    if (spare) fs.rmSync(spare.path, { force: true })
    throw ioError(err, 'Creating a segment', path)
  }
  syncDir(dir)
  return { name, path, fd, firstLsn, prevLsn: header.prevLsn }
}
