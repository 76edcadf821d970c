// The writer's durable LSN, published for readers in other processes: the file DURABLE in
// the log directory holds 16 bytes, rewritten in place after each completed sync, never
// synced itself. A reader in another process sees a rewrite at once (the page cache is
// shared); after a crash the value may be older than what is durable, which only makes
// followers wait until the next writer publishes (open publishes what recovery kept).
//   bytes 0-3   magic "FWDL" (0x4c445746 little-endian)
//   bytes 4-7   CRC32C of bytes 8-15
//   bytes 8-15  durable LSN, u64 little-endian
// A reader that finds a bad magic or CRC (a rewrite it raced with) reads again.
import * as fs from 'node:fs'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { ioError } from './errors.js'
import { readU64, writeU64 } from './format.js'

export const DURABLE_FILE = 'DURABLE'
const MAGIC = 0x4c445746
const SIZE = 16

function encode(lsn: number, backend: Backend, into: Buffer): Buffer {
  into.writeUInt32LE(MAGIC, 0)
  writeU64(into, 8, lsn)
  into.writeUInt32LE(backend.crc32c(into.subarray(8, 16)), 4)
  return into
}

let tempCounter = 0

function durableTempName(path: string): string {
  return `${path}.${process.pid}-${++tempCounter}.tmp`
}

/**
 * A new file holding `bytes`, renamed over `path`: its fd, still open. Undefined where the
 * file cannot be replaced (Windows, while a reader has it open); the caller then rewrites it
 * in place.
 */
function replaceFile(path: string, bytes: Buffer): number | undefined {
  const tmp = durableTempName(path)
  let fd: number | undefined
  try {
    fd = fs.openSync(tmp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o644)
    fs.writeSync(fd, bytes, 0, bytes.length, 0)
    fs.renameSync(tmp, path)
    return fd
  } catch {
    if (fd !== undefined) fs.closeSync(fd)
    try {
      fs.unlinkSync(tmp)
    } catch {
      // never created
    }
    return undefined
  }
}

/** Whether `name` is a DURABLE file a writer had not yet renamed into place (a crash left it). */
export function isDurableTempName(name: string): boolean {
  return /^DURABLE\.[0-9]+-[0-9]+\.tmp$/.test(name)
}

/** The published durable LSN, or undefined when there is none (no writer has published, or an older fastwal wrote the log). */
export function readDurable(dir: string, backend: Backend): number | undefined {
  let fd: number
  try {
    fd = fs.openSync(join(dir, DURABLE_FILE), 'r')
  } catch {
    return undefined
  }
  try {
    const b = Buffer.alloc(SIZE)
    for (let attempt = 0; attempt < 3; attempt++) {
      if (fs.readSync(fd, b, 0, SIZE, 0) !== SIZE) return undefined
      if (b.readUInt32LE(0) === MAGIC && b.readUInt32LE(4) === backend.crc32c(b.subarray(8, 16))) return readU64(b, 8)
    }
    return undefined
  } catch {
    return undefined
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The writer's side: one descriptor, rewrites coalesced so at most one is in flight. A
 * write job of the native backend may make the rewrite itself, right after its sync, in the
 * same trip to the thread pool (claim, then claimed): one pool job per commit, not two.
 */
export class DurablePublisher {
  readonly fd: number
  private readonly path: string
  private readonly buf = Buffer.alloc(SIZE)
  private inflight = false
  private latest = -1 // the LSN to publish
  private written = -1 // the LSN the last write to complete put in the file
  private closed = false

  constructor(
    dir: string,
    private readonly backend: Backend,
    lsn: number,
  ) {
    const path = (this.path = join(dir, DURABLE_FILE))
    // A new file each time a writer opens, renamed into place holding `lsn`: a write a
    // previous writer of this directory still had in flight (a pool job ends after
    // closeSync has released the lock) lands in that writer's old file, never in this one.
    const fresh = replaceFile(path, encode(lsn, backend, this.buf))
    if (fresh !== undefined) {
      this.fd = fresh
      this.latest = this.written = lsn
      return
    }
    try {
      this.fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
    } catch (err) {
      throw ioError(err, 'Publishing the durable LSN', path, 'open')
    }
    this.publishBlocking(lsn)
  }

  /** Publishes on the thread pool. A failed write is not retried: readers wait for a later one. */
  publish(lsn: number): void {
    if (this.closed || lsn <= this.latest) return
    this.latest = lsn
    this.flush()
  }

  /** Publishes on the calling thread. */
  publishBlocking(lsn: number): void {
    if (this.closed) return
    if (lsn > this.latest) this.latest = lsn
    try {
      fs.writeSync(this.fd, encode(this.latest, this.backend, this.buf), 0, SIZE, 0)
      this.written = this.latest
    } catch {
      // Readers then wait for a later publish.
    }
  }

  /**
   * For a write job that will publish `lsn` itself once its sync succeeds: the bytes to
   * write, or undefined when a rewrite is in flight already (publish() then does it).
   * Until claimed() no other rewrite starts.
   */
  claim(lsn: number): Uint8Array | undefined {
    if (this.closed || this.inflight || lsn <= this.written) return undefined
    this.inflight = true
    return encode(lsn, this.backend, Buffer.allocUnsafe(SIZE))
  }

  /** The claimed job ended; `ok` if it wrote `lsn` into the file. */
  claimed(lsn: number, ok: boolean): void {
    this.rewritten(lsn, ok)
  }

  /**
   * After a failed writer, a claimed job may have published an LSN that was not
   * acknowledged: put back the last one that was.
   */
  restore(): void {
    if (this.closed || this.inflight || this.written <= this.latest) return
    this.publishBlocking(this.latest)
  }

  close(lsn: number): void {
    if (this.closed) return
    if (lsn > this.latest) this.latest = lsn
    this.closed = true
    if (!this.inflight) {
      this.publishBlocking(this.latest)
      fs.closeSync(this.fd)
      return
    }
    // A rewrite is still in flight (a commit job's, after a failure possibly of an LSN never
    // acknowledged), and the process may exit before its callback runs: the final value goes
    // into a new file renamed over DURABLE, so the late write lands in the old one. The fd is
    // closed once that write has ended (rewritten()).
    const fresh = replaceFile(this.path, encode(this.latest, this.backend, this.buf))
    if (fresh !== undefined) {
      fs.closeSync(fresh)
      return
    }
    this.closed = false // written in place instead
    this.publishBlocking(this.latest)
    this.closed = true
  }

  private flush(): void {
    if (this.inflight || this.written >= this.latest) return
    this.inflight = true
    const v = this.latest
    fs.write(this.fd, encode(v, this.backend, Buffer.allocUnsafe(SIZE)), 0, SIZE, 0, (err) => this.rewritten(v, !err))
  }

  /** A rewrite of the file with `v` (ours or a claimed job's) ended; `ok` if it was made. */
  private rewritten(v: number, ok: boolean): void {
    this.inflight = false
    // The file holds v now, even if a blocking publish of a later LSN landed before it.
    if (ok) this.written = v
    if (this.closed) {
      // close() wrote the latest LSN; this write may have landed after it: an older LSN,
      // or one a failed writer never acknowledged.
      if (v !== this.latest) {
        try {
          fs.writeSync(this.fd, encode(this.latest, this.backend, this.buf), 0, SIZE, 0)
        } catch {
          // as in publishBlocking
        }
      }
      fs.closeSync(this.fd)
    } else if (this.latest > v) {
      this.written = Math.min(this.written, v)
      this.flush()
    }
  }
}
