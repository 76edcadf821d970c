// Loads the compiled addon once. node-gyp-build picks a matching prebuild from
// prebuilds/<platform>-<arch>/ or a local build/Release; FASTWAL_NATIVE_DIR points it
// elsewhere (tests use an empty directory to exercise the fallback).
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'

export interface NativeAddon {
  crc32c(data: Uint8Array, seed?: number): number
  crc32cImplementation(): string
  encodeRecord(out: Uint8Array, pos: number, type: number, lsn: number, mark: number, key: Uint8Array, value: Uint8Array | undefined): number
  encodeBatch(out: Uint8Array, pos: number, types: Uint8Array, keys: Uint8Array[], values: (Uint8Array | undefined)[], first: number, mark: number): number
  encodeCheckpoint(out: Uint8Array, pos: number, lsn: number, mark: number, checkpointLsn: number): number
  scan(buf: Uint8Array, start: number, end: number): [number, number, number, number, Float64Array]
  findNextRecord(buf: Uint8Array, start: number, end: number): number
  readScan(fd: number, buf: Uint8Array, position: number): Promise<[number, number, number, number, Float64Array]>
  readScanSync(fd: number, buf: Uint8Array, position: number): [number, number, number, number, Float64Array]
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number, sync: boolean): Promise<void>
  writeSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): void
  sync(fd: number): Promise<void>
  syncSync(fd: number): void
  zeroFill(fd: number, offset: number, length: number): Promise<void>
  zeroFillSync(fd: number, offset: number, length: number): void
  tryLock(fd: number): boolean
  unlock(fd: number): void
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

let loaded: { addon?: NativeAddon; error?: Error } | undefined

export function loadAddon(): { addon?: NativeAddon; error?: Error } {
  if (loaded) return loaded
  try {
    const dir = process.env.FASTWAL_NATIVE_DIR || packageRoot()
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => NativeAddon
    loaded = { addon: load(dir) }
  } catch (err) {
    loaded = { error: err instanceof Error ? err : new Error(String(err)) }
  }
  return loaded
}
