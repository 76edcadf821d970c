// The pure-TypeScript backend: the same format through js-codec.ts, and node:fs for I/O
// (whose async calls run on the libuv pool, like the native ones).
import * as fs from 'node:fs'
import type { Backend, NonZero } from './backend.js'
import { firstNonZero } from './bytes.js'
import { crc32cJs } from './crc32c.js'
import * as codec from './js-codec.js'

const ZEROS = Buffer.alloc(64 * 1024)

function writeAllSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0
  while (done < length) {
    const n = fs.writeSync(fd, buf, offset + done, length - done, position + done)
    if (n === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO', syscall: 'write' })
    done += n
  }
}

async function writeAll(fd: number, buf: Uint8Array, offset: number, length: number, position: number): Promise<void> {
  let done = 0
  while (done < length) {
    const n = await writeAsync(fd, buf, offset + done, length - done, position + done)
    if (n === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO', syscall: 'write' })
    done += n
  }
}

function writeAsync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))))
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())))
}

function readFullSync(fd: number, buf: Uint8Array, position: number): number {
  let done = 0
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, position + done)
    if (n === 0) break
    done += n
  }
  return done
}

function readAsync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))))
}

async function readFull(fd: number, buf: Uint8Array, position: number): Promise<number> {
  let done = 0
  while (done < buf.length) {
    const n = await readAsync(fd, buf, done, buf.length - done, position + done)
    if (n === 0) break
    done += n
  }
  return done
}

const ZERO_CHUNK = 256 * 1024
let blockingZeroChunk: Buffer | undefined // the blocking form's chunk, reused (fresh memory costs a fault per page)

async function findNonZero(fd: number, position: number): Promise<NonZero> {
  const buf = Buffer.allocUnsafe(ZERO_CHUNK)
  for (let pos = position; ; ) {
    const n = await readFull(fd, buf, pos)
    const i = firstNonZero(buf.subarray(0, n))
    if (i < n) return { at: pos + i, end: pos + n }
    pos += n
    if (n < buf.length) return { at: -1, end: pos }
  }
}

function findNonZeroBlocking(fd: number, position: number): NonZero {
  const buf = (blockingZeroChunk ??= Buffer.allocUnsafe(ZERO_CHUNK))
  for (let pos = position; ; ) {
    const n = readFullSync(fd, buf, pos)
    const i = firstNonZero(buf.subarray(0, n))
    if (i < n) return { at: pos + i, end: pos + n }
    pos += n
    if (n < buf.length) return { at: -1, end: pos }
  }
}

export const jsBackend: Backend = {
  kind: 'js',
  crc32c: crc32cJs,
  encodeRecord: codec.encodeRecord,
  encodeBatch: codec.encodeBatch,
  encodeCheckpoint: codec.encodeCheckpoint,
  scan: codec.scan,
  findNextRecord: codec.findNextRecord,
  async readScan(fd, buf, position) {
    const n = await readFull(fd, buf, position)
    const r = codec.scan(buf, 0, n)
    return r
  },
  readScanBlocking(fd, buf, position) {
    return codec.scan(buf, 0, readFullSync(fd, buf, position))
  },
  // A publish write here would be one more trip after the sync, on every commit: the
  // caller publishes on its own instead (publishesAfterSync is false).
  async write(fd, buf, offset, length, position, dataSync) {
    await writeAll(fd, buf, offset, length, position)
    if (dataSync) await fdatasync(fd)
    return false
  },
  publishesAfterSync: false,
  writeBlocking: writeAllSync,
  fdatasync,
  fdatasyncBlocking: (fd) => fs.fdatasyncSync(fd),
  findNonZero,
  findNonZeroBlocking,
  async zeroFill(fd, offset, length) {
    for (let done = 0; done < length; ) {
      const n = Math.min(ZEROS.length, length - done)
      await writeAll(fd, ZEROS, 0, n, offset + done)
      done += n
    }
  },
  zeroFillBlocking(fd, offset, length) {
    for (let done = 0; done < length; ) {
      const n = Math.min(ZEROS.length, length - done)
      writeAllSync(fd, ZEROS, 0, n, offset + done)
      done += n
    }
  },
}
