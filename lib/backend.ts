// The one seam between the facade and the two implementations of the hot path.
// Everything above it (group commit, replay, recovery, validation) exists once.

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

export interface NonZero {
  /** Offset of the first non-zero byte, or -1. */
  at: number
  /** Where reading stopped: the end of the file when at is -1. */
  end: number
}

/** Bytes write() puts at offset 0 of `fd` once its own sync has succeeded (at most 64). */
export interface Publish {
  fd: number
  bytes: Uint8Array
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

  // Positional I/O. The promise forms run on the thread pool; the *Blocking forms run on
  // the calling thread. `write` with dataSync=true writes and then fdatasyncs in one trip
  // to the thread pool. Nothing here syncs unless its name or a dataSync flag says so.
  readScan(fd: number, buf: Uint8Array, position: number): Promise<ScanChunk>
  readScanBlocking(fd: number, buf: Uint8Array, position: number): ScanChunk
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number, dataSync: boolean, publish?: Publish): Promise<boolean>
  /**
   * Whether write() honours `publish`: after a successful sync, the same trip writes those
   * bytes at offset 0 of their file (resolving true when it did). A backend that does not
   * ignores it and resolves false.
   */
  readonly publishesAfterSync: boolean
  writeBlocking(fd: number, buf: Uint8Array, offset: number, length: number, position: number): void
  fdatasync(fd: number): Promise<void>
  fdatasyncBlocking(fd: number): void
  // From `position` to the end of the file: the offset of the first non-zero byte (-1 if
  // only zeros follow) and where reading stopped. One trip to the thread pool however long
  // the zeros run, through one reused chunk.
  findNonZero(fd: number, position: number): Promise<NonZero>
  findNonZeroBlocking(fd: number, position: number): NonZero
  zeroFill(fd: number, offset: number, length: number): Promise<void>
  zeroFillBlocking(fd: number, offset: number, length: number): void
}
