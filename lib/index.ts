export { WriteAheadLog } from './wal.js'
export type { ReadOptions, Stats, LatencySummary, GroupCommit, CursorLag, RecoveryReport, LsnRange } from './wal.js'
export type { Cursor } from './cursors.js'
export { WalError } from './errors.js'
export { decodeBatch } from './decode-batch.js'
export type { WalErrorCode, WalErrorDetails } from './errors.js'
export type { Bytes, Operation, Options } from './options.js'
export type { Entry, Batch } from './replay.js'
export type { Codec, Encoding, Decoded, Input } from './encoding.js'
import { crc32cJs } from './crc32c.js'
import { WalError } from './errors.js'
import { loadAddon } from './native-addon.js'

const addon = loadAddon().addon

/**
 * CRC32C (Castagnoli) of data, continuing from `seed` (a previous result). Unsigned 32-bit.
 *
 * @example
 * ```ts
 * crc32c(Buffer.from('123456789')) // 0xe3069283
 * crc32c(Buffer.from('6789'), crc32c(Buffer.from('12345'))) // the same
 * ```
 */
export function crc32c(data: Uint8Array, seed = 0): number {
  if (!(data instanceof Uint8Array)) throw new WalError('WAL_INVALID', 'crc32c(data): data must be a Uint8Array or Buffer.')
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new WalError('WAL_INVALID', 'crc32c(data, seed): seed must be an unsigned 32-bit integer.')
  return addon ? addon.crc32c(data, seed) : crc32cJs(data, seed)
}
