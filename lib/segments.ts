// Segment files on disk: listing, creating, syncing the directory. The hot path (writes,
// syncs, reads of records) goes through the backend; this is the rarer bookkeeping.
import * as fs from 'node:fs'
import { basename, join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError, type Hint } from './errors.js'
import { SEGMENT_HEADER_SIZE, decodeSegmentHeader, encodeSegmentHeader, parseSegmentName, segmentName, type SegmentHeader } from './format.js'

export interface SegmentRef {
  name: string
  /** From the name: above every LSN of earlier segments (the first LSN it may hold). */
  firstLsn: number
}

export function listSegments(dir: string): SegmentRef[] {
  let names: string[]
  try {
    names = fs.readdirSync(dir)
  } catch (err) {
    throw ioError(err, 'Listing the WAL directory', dir, 'read')
  }
  const out: SegmentRef[] = []
  for (const name of names) {
    const firstLsn = parseSegmentName(name)
    if (firstLsn !== undefined) out.push({ name, firstLsn })
  }
  return out.sort((a, b) => a.firstLsn - b.firstLsn)
}

/** Makes directory entries (created, renamed or deleted files) durable. */
export function syncDir(dir: string, hint: Hint = 'write'): void {
  if (process.platform === 'win32') return // NTFS journals metadata; directories cannot be opened for fsync
  let fd: number | undefined
  try {
    fd = fs.openSync(dir, 'r')
    fs.fsyncSync(fd)
  } catch (err) {
    throw ioError(err, 'Syncing the WAL directory', dir, hint)
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/** syncDir on the thread pool. */
export async function syncDirAsync(dir: string, hint: Hint = 'write'): Promise<void> {
  if (process.platform === 'win32') return
  let fd: number | undefined
  try {
    fd = await fsCall<number>((cb) => fs.open(dir, 'r', cb))
    const f = fd
    await fsCall<void>((cb) => fs.fsync(f, cb))
  } catch (err) {
    throw ioError(err, 'Syncing the WAL directory', dir, hint)
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/** A node:fs callback call as a promise (plain fds, no FileHandle that closes itself on GC). */
export function fsCall<T>(start: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => start((err, value) => (err ? reject(err) : resolve(value))))
}

export interface OpenSegment {
  name: string
  path: string
  fd: number
  firstLsn: number
  prevLsn: number
  /** File size once created: the header, or the spare's zero-filled size. */
  size: number
}

/**
 * Preallocation goes in steps: a segment starts with this much zero-filled (or its whole
 * size if smaller), and the writer keeps a zero-filled region ahead of its records by
 * extending the file a step at a time on the thread pool. A small log stays small, and an
 * fdatasync of records almost never carries a size change.
 */
export const PREALLOCATE_STEP = 4 * 1024 * 1024

export function preallocateStep(segmentSize: number): number {
  return Math.min(segmentSize, PREALLOCATE_STEP)
}

const ZERO_CHUNK = 512 * 1024
let zeroChunk: Buffer | undefined

/**
 * Appends zeros to the file at `path` until it is at least `target` bytes, then syncs it;
 * resolves with the size reached. The zeros go through an O_APPEND descriptor, so the
 * kernel places each write at the end of the file at that moment: a record written
 * meanwhile (by the pool or by a blocking append) is never overwritten, zeros only ever
 * go after it. Runs on the thread pool.
 */
export async function extendWithZeros(path: string, target: number, backend: Backend, stop: () => boolean): Promise<{ size: number; zeros: number }> {
  const fd = await fsCall<number>((cb) => fs.open(path, fs.constants.O_WRONLY | fs.constants.O_APPEND, cb))
  try {
    const zeros = (zeroChunk ??= Buffer.alloc(ZERO_CHUNK))
    let size = (await fsCall<fs.Stats>((cb) => fs.fstat(fd, cb))).size
    let wrote = 0
    // Synced a chunk at a time: the writer's own fdatasync on this file, which flushes every
    // dirty page of it, then carries at most one chunk of zeros. `stop()` (the writer closed,
    // or moved on to the next segment) ends it between chunks.
    while (size < target && !stop()) {
      wrote += await fsCall<number>((cb) => fs.write(fd, zeros, 0, Math.min(ZERO_CHUNK, target - size), null, cb))
      await backend.fdatasync(fd)
      size = (await fsCall<fs.Stats>((cb) => fs.fstat(fd, cb))).size
    }
    return { size, zeros: wrote }
  } finally {
    fs.close(fd, () => {})
  }
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
    await backend.fdatasync(fd)
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
    backend.zeroFillBlocking(fd, 0, size)
    backend.fdatasyncBlocking(fd)
  } catch (err) {
    fs.closeSync(fd)
    fs.rmSync(path, { force: true })
    throw err
  }
  return { path, fd, size }
}

export function discardSpare(spare: Spare): void {
  try {
    fs.closeSync(spare.fd)
  } finally {
    fs.rmSync(spare.path, { force: true })
  }
}

/**
 * Gives a prepared file (header synced) its segment name. Never replaces a file: the
 * writer's names strictly increase, so an existing one means something else wrote here.
 */
function placeSegment(file: Spare, path: string): void {
  if (fs.existsSync(path))
    throw new WalError(
      'WAL_CORRUPT',
      `A segment named ${path} already exists where the writer was about to create a new one; nothing was overwritten. Another process may be writing to this directory: stop it, then reopen.`,
      { segment: basename(path), offset: 0 },
    )
  fs.renameSync(file.path, path)
}

/** A new, empty file under a temporary (spare) name, removed by the next open if left behind. */
function tempFileSync(dir: string): Spare {
  const path = join(dir, spareName())
  return { path, fd: fs.openSync(path, 'wx+'), size: 0 }
}

/**
 * Creates a segment: header written, file synced, directory synced, so that once this
 * returns the new (empty) segment survives a crash. With a spare (a zero-filled file), the
 * spare is renamed into place; otherwise the file is sized to `preallocateTo` without
 * writing zeros (a fallback: the size is the same whatever the timing, but the first
 * syncs into it allocate blocks).
 * Creation never replaces a file: a name that exists is refused (the writer's names
 * strictly increase, so that means something else wrote here).
 */
export function createSegment(dir: string, backend: Backend, firstLsn: number, header: SegmentHeader, preallocateTo: number, spare?: Spare): OpenSegment {
  const name = segmentName(firstLsn)
  const path = join(dir, name)
  // The file is made under a temporary name and renamed into place once its header is
  // synced: a crash never leaves a segment with a missing or torn header.
  let file: Spare | undefined = spare
  try {
    if (!file) {
      file = tempFileSync(dir)
      if (preallocateTo > SEGMENT_HEADER_SIZE) {
        fs.ftruncateSync(file.fd, preallocateTo)
        file.size = preallocateTo
      }
    }
    backend.writeBlocking(file.fd, encodeSegmentHeader(header, backend.crc32c), 0, SEGMENT_HEADER_SIZE, 0)
    backend.fdatasyncBlocking(file.fd)
    placeSegment(file, path)
  } catch (err) {
    // The spare, if any, is consumed either way: its fd is closed and its file removed.
    if (file) discardSpare(file)
    throw err instanceof WalError ? err : ioError(err, 'Creating a segment', path, 'write')
  }
  try {
    syncDir(dir)
  } catch (err) {
    fs.closeSync(file.fd)
    throw err
  }
  return { name, path, fd: file.fd, firstLsn, prevLsn: header.prevLsn, size: Math.max(file.size, SEGMENT_HEADER_SIZE) }
}

/**
 * createSegment off the event loop, but for the directory sync, which the caller runs
 * next (syncDirAsync) and must finish before the segment counts as created: the header
 * write and its sync run on the thread pool. The rename that makes the file a segment
 * runs on the calling thread (a microsecond metadata call) right after `abandoned()`, so
 * a synchronous caller that created the segment meanwhile is never overwritten: then the
 * prepared file is removed instead and undefined returned.
 */
export async function createSegmentAsync(
  dir: string,
  backend: Backend,
  firstLsn: number,
  header: SegmentHeader,
  preallocateTo: number,
  spare: Spare | undefined,
  abandoned: () => boolean,
): Promise<OpenSegment | undefined> {
  const name = segmentName(firstLsn)
  const path = join(dir, name)
  let file: Spare | undefined = spare
  try {
    if (!file) {
      const tmp = join(dir, spareName())
      file = { path: tmp, fd: await fsCall<number>((cb) => fs.open(tmp, 'wx+', cb)), size: 0 }
      if (preallocateTo > SEGMENT_HEADER_SIZE) {
        const f = file.fd
        await fsCall<void>((cb) => fs.ftruncate(f, preallocateTo, cb))
        file.size = preallocateTo
      }
    }
    const head = encodeSegmentHeader(header, backend.crc32c)
    await backend.write(file.fd, head, 0, SEGMENT_HEADER_SIZE, 0, true)
    if (abandoned()) {
      discardSpare(file)
      return undefined
    }
    placeSegment(file, path)
  } catch (err) {
    if (file) discardSpare(file)
    throw err instanceof WalError ? err : ioError(err, 'Creating a segment', path, 'write')
  }
  return { name, path, fd: file.fd, firstLsn, prevLsn: header.prevLsn, size: Math.max(file.size, SEGMENT_HEADER_SIZE) }
}

/** A segment's header prevLsn (32 bytes read), or undefined if the header is unreadable. */
export function readPrevLsn(dir: string, seg: SegmentRef, backend: Backend): number | undefined {
  let fd: number | undefined
  try {
    fd = fs.openSync(join(dir, seg.name), 'r')
    const b = Buffer.alloc(SEGMENT_HEADER_SIZE)
    const n = fs.readSync(fd, b, 0, SEGMENT_HEADER_SIZE, 0)
    const h = decodeSegmentHeader(b.subarray(0, n), backend.crc32c)
    return typeof h === 'string' ? undefined : h.prevLsn
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
