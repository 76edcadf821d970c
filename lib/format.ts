// Constants of the on-disk format. docs/FORMAT.md is the prose version of this file and
// native/codec.h mirrors it; change all three together.

export const SEGMENT_HEADER_SIZE = 32
export const RECORD_HEADER_SIZE = 32
export const SEGMENT_MAGIC = 0x4c415746 // "FWAL" read as a little-endian u32
export const FORMAT_VERSION = 1

export const TYPE_PUT = 1
export const TYPE_DEL = 2
export const TYPE_BEGIN = 3
export const TYPE_COMMIT = 4
export const TYPE_CHECKPOINT = 5
export const FLAG_BATCH = 1

/** Largest payload a record may carry (the length field is kept below 2^31). */
export const MAX_PAYLOAD = 0x7fffffff - RECORD_HEADER_SIZE
/** LSNs are JavaScript numbers: integers up to 2^53 - 1 are exact. */
export const MAX_LSN = Number.MAX_SAFE_INTEGER

// Layout of the per-record index the scanners produce (native/codec.h IndexField).
export const IX_STRIDE = 6
export const IX_POS = 0
export const IX_LENGTH = 1
export const IX_TYPE = 2 // type | flags << 8: read it with typeAt/flagsAt
export const IX_AUX = 3
export const IX_LSN = 4
export const IX_MARK = 5

/** The record type of index row `i`. */
export function typeAt(ix: Float64Array, i: number): number {
  return ix[i + IX_TYPE] & 0xff
}

/** The flags of index row `i`. */
export function flagsAt(ix: Float64Array, i: number): number {
  return ix[i + IX_TYPE] >> 8
}

export const SCAN_END = 0
export const SCAN_NEED_MORE = 1
export const SCAN_BAD = 2
export const SCAN_ZERO = 3

export const SEGMENT_SUFFIX = '.wal'
const SEGMENT_NAME = /^(\d{20})\.wal$/

/** Segment files are named by the first LSN they may hold, zero-padded so names sort. */
export function segmentName(firstLsn: number): string {
  return String(firstLsn).padStart(20, '0') + SEGMENT_SUFFIX
}

export function parseSegmentName(name: string): number | undefined {
  const m = SEGMENT_NAME.exec(name)
  if (!m) return undefined
  const n = Number(m[1])
  return Number.isSafeInteger(n) && n >= 1 ? n : undefined
}

export interface SegmentHeader {
  prevLsn: number // LSN of the last record before this segment (0: none)
  checkpointLsn: number // latest checkpoint when the segment was created
}

export function encodeSegmentHeader(h: SegmentHeader, crc: (b: Uint8Array) => number): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_SIZE)
  b.writeUInt32LE(SEGMENT_MAGIC, 0)
  b.writeUInt16LE(FORMAT_VERSION, 4)
  b.writeUInt16LE(SEGMENT_HEADER_SIZE, 6)
  writeU64(b, 8, h.prevLsn)
  writeU64(b, 16, h.checkpointLsn)
  b.writeUInt32LE(crc(b.subarray(0, 28)), 28)
  return b
}

/** Returns the header, or a string saying what is wrong with it. */
export function decodeSegmentHeader(b: Uint8Array, crc: (b: Uint8Array) => number): SegmentHeader | string {
  if (b.length < SEGMENT_HEADER_SIZE) return `short header (${b.length} of ${SEGMENT_HEADER_SIZE} bytes)`
  const buf = Buffer.from(b.buffer, b.byteOffset, b.length)
  if (buf.readUInt32LE(0) !== SEGMENT_MAGIC) return 'bad magic number: not a fastwal segment'
  const version = buf.readUInt16LE(4)
  if (version !== FORMAT_VERSION) return `unsupported format version ${version} (this fastwal reads ${FORMAT_VERSION})`
  if (buf.readUInt16LE(6) !== SEGMENT_HEADER_SIZE) return 'bad header size'
  if (buf.readUInt32LE(28) !== crc(buf.subarray(0, 28))) return 'header checksum mismatch'
  const prevLsn = readU64(buf, 8)
  const checkpointLsn = readU64(buf, 16)
  if (prevLsn > MAX_LSN || checkpointLsn > prevLsn) return 'header fields out of range'
  return { prevLsn, checkpointLsn }
}

export function writeU64(b: Uint8Array, off: number, v: number): void {
  const lo = v >>> 0
  const hi = Math.floor(v / 0x100000000) >>> 0
  b[off] = lo
  b[off + 1] = lo >>> 8
  b[off + 2] = lo >>> 16
  b[off + 3] = lo >>> 24
  b[off + 4] = hi
  b[off + 5] = hi >>> 8
  b[off + 6] = hi >>> 16
  b[off + 7] = hi >>> 24
}

/** Reads a little-endian u64; values above 2^53 come back as a larger-than-MAX_LSN number. */
export function readU64(b: Uint8Array, off: number): number {
  const lo = (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0
  const hi = (b[off + 4] | (b[off + 5] << 8) | (b[off + 6] << 16) | (b[off + 7] << 24)) >>> 0
  return hi * 0x100000000 + lo
}
