// Loads the compiled addon once. node-gyp-build picks a matching prebuild from
// prebuilds/<platform>-<arch>/ or a local build/Release; FASTWAL_NATIVE_DIR points it
// elsewhere (tests use an empty directory to exercise the fallback). An addon compiled
// with different on-disk format constants than lib/format.ts is refused like one that
// failed to load.
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import {
  FLAG_BATCH,
  IX_AUX,
  IX_LENGTH,
  IX_LSN,
  IX_MARK,
  IX_POS,
  IX_STRIDE,
  IX_TYPE,
  MAX_LSN,
  MAX_PAYLOAD,
  RECORD_HEADER_SIZE,
  SCAN_BAD,
  SCAN_END,
  SCAN_NEED_MORE,
  SCAN_ZERO,
  TYPE_BEGIN,
  TYPE_CHECKPOINT,
  TYPE_COMMIT,
  TYPE_DEL,
  TYPE_PUT,
} from './format.js'

/** The addon's `format` export (native/codec.h), by name, and the lib/format.ts value each must equal. */
export const ADDON_FORMAT = {
  recordHeaderSize: RECORD_HEADER_SIZE,
  maxPayload: MAX_PAYLOAD,
  maxLsn: MAX_LSN,
  typePut: TYPE_PUT,
  typeDel: TYPE_DEL,
  typeBegin: TYPE_BEGIN,
  typeCommit: TYPE_COMMIT,
  typeCheckpoint: TYPE_CHECKPOINT,
  flagBatch: FLAG_BATCH,
  ixStride: IX_STRIDE,
  ixPos: IX_POS,
  ixLength: IX_LENGTH,
  ixType: IX_TYPE,
  ixAux: IX_AUX,
  ixLsn: IX_LSN,
  ixMark: IX_MARK,
  scanEnd: SCAN_END,
  scanNeedMore: SCAN_NEED_MORE,
  scanBad: SCAN_BAD,
  scanZero: SCAN_ZERO,
} as const

export type AddonFormat = { readonly [K in keyof typeof ADDON_FORMAT]: number }

/**
 * The native addon's exports. The *Blocking functions run on the calling thread; the others
 * return a promise and run on the thread pool. `write` with dataSync=true writes and then
 * fdatasyncs in one trip to the pool; nothing else syncs unless its name says so.
 */
export interface NativeAddon {
  readonly format: AddonFormat
  crc32c(data: Uint8Array, seed?: number): number
  crc32cImplementation(): string
  encodeRecord(out: Uint8Array, pos: number, type: number, lsn: number, mark: number, key: Uint8Array, value: Uint8Array | undefined): number
  encodeBatch(out: Uint8Array, pos: number, types: Uint8Array, keys: Uint8Array[], values: (Uint8Array | undefined)[], first: number, mark: number): number
  encodeCheckpoint(out: Uint8Array, pos: number, lsn: number, mark: number, checkpointLsn: number): number
  scan(buf: Uint8Array, start: number, end: number): [number, number, number, number, Float64Array]
  findNextRecord(buf: Uint8Array, start: number, end: number): number
  readScan(fd: number, buf: Uint8Array, position: number): Promise<[number, number, number, number, Float64Array]>
  readScanBlocking(fd: number, buf: Uint8Array, position: number): [number, number, number, number, Float64Array]
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number, dataSync: boolean, publishFd?: number, publish?: Uint8Array): Promise<boolean>
  writeBlocking(fd: number, buf: Uint8Array, offset: number, length: number, position: number): void
  fdatasync(fd: number): Promise<void>
  fdatasyncBlocking(fd: number): void
  zeroFill(fd: number, offset: number, length: number): Promise<void>
  findNonZero(fd: number, position: number): Promise<[number, number]>
  findNonZeroBlocking(fd: number, position: number): [number, number]
  zeroFillBlocking(fd: number, offset: number, length: number): void
  tryLock(fd: number): boolean
  unlock(fd: number): void
  /** Linux: the fd of a socket bound to this abstract address (leading NUL included), or -1 if taken. */
  bindAbstract(name: Uint8Array): number
}

/** The package root: the nearest directory above this file that holds binding.gyp. */
export function packageRoot(): string {
  let dir = __dirname
  while (!existsSync(join(dir, 'binding.gyp'))) {
    const up = dirname(dir)
    if (up === dir) return join(__dirname, '..')
    dir = up
  }
  return dir
}

/**
 * Compares the format constants an addon was compiled with against lib/format.ts.
 * Returns what is wrong (naming the constant and both values), or undefined if all match.
 */
export function checkAddonFormat(addon: { readonly format?: unknown }): string | undefined {
  const rebuild = 'rebuild the addon: npm rebuild fastwal'
  const format = addon.format
  if (typeof format !== 'object' || format === null)
    return `the native addon exports no format constants (built from another fastwal version?); ${rebuild}`
  const got = format as Record<string, unknown>
  for (const [name, want] of Object.entries(ADDON_FORMAT)) {
    const have = got[name]
    if (have !== want)
      return (
        `the native addon was built for a different on-disk format: format.${name} is ` +
        `${String(have)} in the addon but ${want} in lib/format.ts; ${rebuild}`
      )
  }
  return undefined
}

let loaded: { addon?: NativeAddon; error?: Error } | undefined

export function loadAddon(): { addon?: NativeAddon; error?: Error } {
  if (loaded) return loaded
  try {
    const dir = process.env.FASTWAL_NATIVE_DIR || packageRoot()
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => NativeAddon
    const addon = load(dir)
    const mismatch = checkAddonFormat(addon)
    loaded = mismatch ? { error: new Error(mismatch) } : { addon }
  } catch (err) {
    loaded = { error: err instanceof Error ? err : new Error(String(err)) }
  }
  return loaded
}
