// Pure-TypeScript record encoder and chunk scanner: the same rules as native/codec.cc,
// byte for byte (test/codec.test.ts holds the two to that).
import { byteLength } from './bytes.js'
import { crc32cRange } from './crc32c.js'
import {
  FLAG_BATCH,
  MAX_PAYLOAD,
  RECORD_HEADER_SIZE as H,
  SCAN_BAD,
  SCAN_END,
  SCAN_NEED_MORE,
  SCAN_ZERO,
  TYPE_BEGIN,
  TYPE_CHECKPOINT,
  TYPE_COMMIT,
  TYPE_DEL,
  TYPE_PUT,
  readU64,
  writeU64,
} from './format.js'
import type { ScanChunk } from './backend.js'

function writeHeader(out: Uint8Array, p: number, length: number, type: number, flags: number, aux: number, lsn: number, mark: number): void {
  out[p + 4] = length
  out[p + 5] = length >>> 8
  out[p + 6] = length >>> 16
  out[p + 7] = length >>> 24
  out[p + 8] = type
  out[p + 9] = flags
  out[p + 10] = 0
  out[p + 11] = 0
  out[p + 12] = aux
  out[p + 13] = aux >>> 8
  out[p + 14] = aux >>> 16
  out[p + 15] = aux >>> 24
  writeU64(out, p + 16, lsn)
  writeU64(out, p + 24, mark)
}

function sealCrc(out: Uint8Array, p: number, end: number): void {
  const c = crc32cRange(out, p + 4, end)
  out[p] = c
  out[p + 1] = c >>> 8
  out[p + 2] = c >>> 16
  out[p + 3] = c >>> 24
}

function encodeOp(out: Uint8Array, p: number, type: number, flags: number, lsn: number, mark: number, key: Uint8Array, value: Uint8Array | undefined): number {
  // The engine's lengths, the ones out.set copies (lib/bytes.ts).
  const klen = byteLength(key)
  const vlen = value ? byteLength(value) : 0
  writeHeader(out, p, klen + vlen, type, flags, klen, lsn, mark)
  out.set(key, p + H)
  if (vlen) out.set(value!, p + H + klen)
  const end = p + H + klen + vlen
  sealCrc(out, p, end)
  return end
}

export function encodeRecord(out: Uint8Array, pos: number, type: number, lsn: number, mark: number, key: Uint8Array, value: Uint8Array | undefined): number {
  return encodeOp(out, pos, type, 0, lsn, mark, key, value)
}

export function encodeBatch(out: Uint8Array, pos: number, types: Uint8Array, keys: Uint8Array[], values: (Uint8Array | undefined)[], first: number, mark: number): number {
  const n = types.length
  writeHeader(out, pos, 0, TYPE_BEGIN, 0, n, first, mark)
  sealCrc(out, pos, pos + H)
  let p = pos + H
  for (let i = 0; i < n; i++) p = encodeOp(out, p, types[i], FLAG_BATCH, first + i, mark, keys[i], values[i])
  writeHeader(out, p, 8, TYPE_COMMIT, 0, n, first + n - 1, mark)
  writeU64(out, p + H, first)
  sealCrc(out, p, p + H + 8)
  return p + H + 8
}

export function encodeCheckpoint(out: Uint8Array, pos: number, lsn: number, mark: number, checkpointLsn: number): number {
  writeHeader(out, pos, 8, TYPE_CHECKPOINT, 0, 0, lsn, mark)
  writeU64(out, pos + H, checkpointLsn)
  sealCrc(out, pos, pos + H + 8)
  return pos + H + 8
}

function u32(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0
}

function allZero(b: Uint8Array, p: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[p + i] !== 0) return false
  return true
}

/** Field rules of docs/FORMAT.md "Record validity"; returns the payload length or -1. */
function plausible(b: Uint8Array, p: number): number {
  if (b[p + 10] !== 0 || b[p + 11] !== 0) return -1
  const length = u32(b, p + 4)
  const type = b[p + 8]
  const flags = b[p + 9]
  const aux = u32(b, p + 12)
  const lsn = readU64(b, p + 16)
  const mark = readU64(b, p + 24)
  if (lsn === 0 || lsn > Number.MAX_SAFE_INTEGER || mark > lsn || length > MAX_PAYLOAD) return -1
  switch (type) {
    case TYPE_PUT:
      return (flags & ~FLAG_BATCH) === 0 && aux <= length ? length : -1
    case TYPE_DEL:
      return (flags & ~FLAG_BATCH) === 0 && aux === length ? length : -1
    case TYPE_BEGIN:
      return flags === 0 && length === 0 && aux >= 1 ? length : -1
    case TYPE_COMMIT:
      return flags === 0 && length === 8 && aux >= 1 ? length : -1
    case TYPE_CHECKPOINT:
      return flags === 0 && length === 8 && aux === 0 ? length : -1
    default:
      return -1
  }
}

export function validRecordAt(b: Uint8Array, pos: number, end: number): number {
  if (end - pos < H) return 0
  const length = plausible(b, pos)
  if (length < 0 || length > end - pos - H) return 0
  return crc32cRange(b, pos + 4, pos + H + length) === u32(b, pos) ? H + length : 0
}

export function scan(b: Uint8Array, start: number, end: number): ScanChunk {
  const ix: number[] = []
  let pos = start
  let status = SCAN_END
  let need = 0
  while (pos < end) {
    const remaining = end - pos
    if (remaining < H) {
      status = allZero(b, pos, remaining) ? SCAN_ZERO : SCAN_NEED_MORE
      need = H
      break
    }
    if (allZero(b, pos, H)) {
      status = SCAN_ZERO
      break
    }
    const length = plausible(b, pos)
    if (length < 0) {
      status = SCAN_BAD
      break
    }
    if (H + length > remaining) {
      status = SCAN_NEED_MORE
      need = H + length
      break
    }
    if (crc32cRange(b, pos + 4, pos + H + length) !== u32(b, pos)) {
      status = SCAN_BAD
      break
    }
    ix.push(pos, length, b[pos + 8] | (b[pos + 9] << 8), u32(b, pos + 12), readU64(b, pos + 16), readU64(b, pos + 24))
    pos += H + length
  }
  return { bytes: end, status, stop: pos, need, index: Float64Array.from(ix) }
}

export function findNextRecord(b: Uint8Array, start: number, end: number): number {
  for (let pos = start; pos + H <= end; pos++) {
    if (b[pos + 8] - 1 > 4 || b[pos + 8] === 0) continue
    if (validRecordAt(b, pos, end)) return pos
  }
  return end
}
