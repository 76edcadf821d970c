// Cursors: a consumer's confirmed position, one file per cursor in the log directory,
// "<name>.cursor", shared by every handle and process on that directory. A confirm
// replaces the file atomically (temporary file, fdatasync, rename, directory fsync), so
// a crash leaves the old position or the new one, never a torn one. checkpoint reads them
// all and keeps every segment that holds an entry above any cursor's LSN.
//   bytes 0-3   magic "FWCR" (0x52435746 little-endian)
//   bytes 4-7   CRC32C of bytes 8-15
//   bytes 8-15  the confirmed LSN, u64 little-endian
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { MAX_LSN, readU64, writeU64 } from './format.js'
import { fsCall, syncDirAsync } from './segments.js'

const MAGIC = 0x52435746
const SIZE = 16
const SUFFIX = '.cursor'
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/
let tempCounter = 0

export function isCursorTempName(name: string): boolean {
  return /^\.cursor-[0-9]+-[0-9]+\.tmp$/.test(name)
}

export function checkCursorName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name) || name.endsWith(SUFFIX))
    throw new WalError('WAL_INVALID', `cursor(name): name must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit; got ${JSON.stringify(name)}.`)
  return name
}

function encode(lsn: number, backend: Backend): Buffer {
  const b = Buffer.alloc(SIZE)
  b.writeUInt32LE(MAGIC, 0)
  writeU64(b, 8, lsn)
  b.writeUInt32LE(backend.crc32c(b.subarray(8, 16)), 4)
  return b
}

function decode(b: Buffer, backend: Backend): number | undefined {
  if (b.length !== SIZE || b.readUInt32LE(0) !== MAGIC || b.readUInt32LE(4) !== backend.crc32c(b.subarray(8, 16))) return undefined
  const lsn = readU64(b, 8)
  return lsn <= MAX_LSN ? lsn : undefined
}

function badCursor(dir: string, file: string): WalError {
  return new WalError('WAL_CORRUPT', `Cursor file ${file} in ${dir} is damaged (bad magic number or checksum). Delete it to drop that cursor, then create it again from the consumer's own record of its position.`, { segment: file, offset: 0 })
}

/** The cursor a directory entry holds, or undefined when it is not a cursor file. */
function cursorNameOf(file: string): string | undefined {
  if (!file.endsWith(SUFFIX)) return undefined
  const name = file.slice(0, -SUFFIX.length)
  return NAME.test(name) ? name : undefined
}

/** Every cursor on disk: name → LSN. */
export async function readCursors(dir: string, backend: Backend): Promise<Map<string, number>> {
  const names = await fsCall<string[]>((cb) => fs.readdir(dir, cb))
  const out = new Map<string, number>()
  for (const file of names) {
    const name = cursorNameOf(file)
    if (name === undefined) continue
    const lsn = await readCursorFile(dir, name, backend)
    if (lsn !== undefined) out.set(name, lsn)
  }
  return out
}

/** The blocking form of readCursors, for stats(). */
export function readCursorsBlocking(dir: string, backend: Backend): Map<string, number> {
  const out = new Map<string, number>()
  let names: string[]
  try {
    names = fs.readdirSync(dir)
  } catch {
    return out
  }
  for (const file of names) {
    const name = cursorNameOf(file)
    if (name === undefined) continue
    try {
      const lsn = decode(fs.readFileSync(join(dir, file)), backend)
      if (lsn !== undefined) out.set(name, lsn)
    } catch {
      // dropped meanwhile
    }
  }
  return out
}

/** A cursor's LSN, or undefined when it does not exist. Throws WAL_CORRUPT for a damaged file. */
export async function readCursorFile(dir: string, name: string, backend: Backend): Promise<number | undefined> {
  const path = join(dir, name + SUFFIX)
  let b: Buffer
  try {
    b = await fs.promises.readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw ioError(err, 'Reading a cursor', path, 'cursor')
  }
  const lsn = decode(b, backend)
  if (lsn === undefined) throw badCursor(dir, name + SUFFIX)
  return lsn
}

/** Replaces (or creates) a cursor's file atomically and durably. */
export async function writeCursorFile(dir: string, name: string, lsn: number, backend: Backend): Promise<void> {
  const path = join(dir, name + SUFFIX)
  const tmp = join(dir, `.cursor-${process.pid}-${++tempCounter}.tmp`)
  let fd: number | undefined
  try {
    fd = await fsCall<number>((cb) => fs.open(tmp, 'wx', 0o644, cb))
    const f = fd
    const b = encode(lsn, backend)
    await fsCall<number>((cb) => fs.write(f, b, 0, SIZE, 0, cb))
    await fsCall<void>((cb) => fs.fdatasync(f, cb))
    await fsCall<void>((cb) => fs.close(f, cb))
    fd = undefined
    await fsCall<void>((cb) => fs.rename(tmp, path, cb))
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd)
    fs.rmSync(tmp, { force: true })
    throw ioError(err, 'Writing a cursor', path, 'cursor')
  }
  await syncDirAsync(dir, 'cursor')
}

export async function removeCursorFile(dir: string, name: string): Promise<void> {
  const path = join(dir, name + SUFFIX)
  try {
    await fsCall<void>((cb) => fs.unlink(path, cb))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw ioError(err, 'Removing a cursor', path, 'cursor')
  }
  await syncDirAsync(dir, 'cursor')
}

/** What a cursor needs from its handle. */
export interface CursorHost {
  dir: string
  backend: Backend
  /** Highest LSN the log is known to hold (a confirm above it is refused). */
  lastLsn(): number
  /** Throws WAL_CLOSED after close. */
  check(what: string): void
}

/**
 * A named, durable position of a consumer in the log (a `<name>.cursor` file). Until it
 * is confirmed past them, checkpoints keep the segments it still needs, in this process
 * or any other.
 *
 * @example
 * ```ts
 * const cursor = await wal.cursor('billing')
 * for await (const e of wal.follow({ from: cursor.lsn + 1 })) {
 *   await bill(e)
 *   await cursor.confirm(e.lsn)
 * }
 * ```
 */
export class Cursor {
  private dropped = false
  private queue: Promise<void> = Promise.resolve()

  /** Made by {@link WriteAheadLog.cursor}. */
  constructor(
    private readonly host: CursorHost,
    /** The cursor's name (its file is `<name>.cursor`). */
    readonly name: string,
    private confirmed: number,
  ) {}

  /** The confirmed LSN: everything up to it is consumed. */
  get lsn(): number {
    return this.confirmed
  }

  /**
   * Moves the cursor forward to `lsn`, durably; a lower `lsn` is a no-op.
   *
   * @example
   * ```ts
   * await cursor.confirm(entry.lsn)
   * ```
   */
  confirm(lsn: number): Promise<void> {
    try {
      this.host.check('cursor.confirm')
      if (typeof lsn !== 'number' || !Number.isInteger(lsn) || lsn < 0)
        throw new WalError('WAL_INVALID', `cursor('${this.name}').confirm(lsn): lsn must be a non-negative integer; got ${String(lsn)}.`)
      if (this.dropped) throw new WalError('WAL_INVALID', `cursor('${this.name}').confirm(${lsn}): the cursor was dropped. Call wal.cursor('${this.name}') to create it again.`)
      if (lsn <= this.confirmed) return Promise.resolve()
      const last = this.host.lastLsn()
      if (lsn > last) throw new WalError('WAL_INVALID', `cursor('${this.name}').confirm(${lsn}): the log holds LSNs only up to ${last}; confirm what you have consumed.`)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.serial(async () => {
      if (this.dropped || lsn <= this.confirmed) return
      // Another handle may have moved it further: cursors only move forward.
      const onDisk = (await readCursorFile(this.host.dir, this.name, this.host.backend)) ?? 0
      const next = Math.max(lsn, onDisk)
      if (next > onDisk) await writeCursorFile(this.host.dir, this.name, next, this.host.backend)
      this.confirmed = Math.max(this.confirmed, next)
    })
  }

  /**
   * Removes the cursor: the log stops keeping segments for it.
   *
   * @example
   * ```ts
   * await (await wal.cursor('retired-consumer')).drop()
   * ```
   */
  drop(): Promise<void> {
    try {
      this.host.check('cursor.drop')
    } catch (err) {
      return Promise.reject(err)
    }
    return this.serial(async () => {
      if (this.dropped) return
      await removeCursorFile(this.host.dir, this.name)
      this.dropped = true
    })
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const p = this.queue.then(fn)
    this.queue = p.catch(() => undefined)
    return p
  }
}

/** Opens the named cursor, creating it at `startLsn` when it does not exist. */
export async function openCursor(host: CursorHost, name: string, startLsn: number): Promise<Cursor> {
  let lsn = await readCursorFile(host.dir, name, host.backend)
  if (lsn === undefined) {
    lsn = startLsn
    await writeCursorFile(host.dir, name, lsn, host.backend)
  }
  return new Cursor(host, name, lsn)
}
