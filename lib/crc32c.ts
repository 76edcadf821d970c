// Portable CRC32C (Castagnoli), slicing-by-8: eight table lookups per 8 input bytes.
// The pure-TS backend uses it; the native backend has CPU-instruction paths.

const POLY = 0x82f63b78
const T = new Int32Array(8 * 256)
for (let i = 0; i < 256; i++) {
  let c = i
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1
  T[i] = c
}
for (let i = 0; i < 256; i++) {
  for (let s = 1; s < 8; s++) {
    const prev = T[(s - 1) * 256 + i]
    T[s * 256 + i] = (prev >>> 8) ^ T[prev & 0xff]
  }
}

/** Extends `seed` (the CRC of the preceding bytes; 0 to start) over data[start, end). */
export function crc32cRange(data: Uint8Array, start: number, end: number, seed = 0): number {
  let c = ~seed
  let i = start
  const fast = end - ((end - start) & 7)
  while (i < fast) {
    const lo = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24))
    c =
      T[1792 + (lo & 0xff)] ^
      T[1536 + ((lo >>> 8) & 0xff)] ^
      T[1280 + ((lo >>> 16) & 0xff)] ^
      T[1024 + (lo >>> 24)] ^
      T[768 + data[i + 4]] ^
      T[512 + data[i + 5]] ^
      T[256 + data[i + 6]] ^
      T[data[i + 7]]
    i += 8
  }
  while (i < end) c = (c >>> 8) ^ T[(c ^ data[i++]) & 0xff]
  return ~c >>> 0
}

export function crc32cJs(data: Uint8Array, seed = 0): number {
  return crc32cRange(data, 0, data.length, seed)
}
