// The one seam between the facade and the two implementations of the hot path.
// Everything above it (group commit, replay, recovery, validation) exists once.
import type { Options } from './options.js'

/** What a scan of one chunk found; positions are relative to the chunk buffer. */
export interface ScanChunk {
  /** Bytes in the chunk (for read+scan: bytes actually read). */
  bytes: number
  /** SCAN_END, SCAN_NEED_MORE, SCAN_BAD or SCAN_ZERO (format.ts). */
  status: number
  /** Where scanning stopped: the first byte not consumed by a whole valid record. */
  stop: number
  /** With SCAN_NEED_MORE: bytes from `stop` needed to hold the record. */
  need: number
  /** IX_STRIDE numbers per valid record (format.ts IX_*). */
  index: Float64Array
}

export interface Backend {
  readonly kind: 'native' | 'js'

  crc32c(data: Uint8Array, seed?: number): number

  // Encoding into a caller-owned buffer at pos; each returns the end position.
  // Inputs are validated by the facade; the native side re-checks bounds anyway.
  encodeRecord(out: Uint8Array, pos: number, type: number, lsn: number, mark: number, key: Uint8Array, value: Uint8Array | undefined): number
  encodeBatch(out: Uint8Array, pos: number, types: Uint8Array, keys: Uint8Array[], values: (Uint8Array | undefined)[], first: number, mark: number): number
  encodeCheckpoint(out: Uint8Array, pos: number, lsn: number, mark: number, checkpointLsn: number): number

  // Validation of bytes already in memory.
  scan(buf: Uint8Array, start: number, end: number): ScanChunk
  findNextRecord(buf: Uint8Array, start: number, end: number): number

  // Positional I/O. Async forms run off the event-loop thread; `write` with sync=true
  // does the write and the data sync in one trip to the thread pool.
  readScan(fd: number, buf: Uint8Array, position: number): Promise<ScanChunk>
  readScanSync(fd: number, buf: Uint8Array, position: number): ScanChunk
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number, sync: boolean): Promise<void>
  writeSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): void
  sync(fd: number): Promise<void>
  syncSync(fd: number): void
  zeroFill(fd: number, offset: number, length: number): Promise<void>
  zeroFillSync(fd: number, offset: number, length: number): void
}

export type BackendChoice = NonNullable<Options['backend']>
