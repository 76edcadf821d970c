// Small helpers shared by the module tests: collecting iterators, expecting a WalError code,
// and writing a small log.
import * as assert from 'uvu/assert'
import { WalError, WriteAheadLog } from '../../lib/index.js'
import { tmpDir, type BackendName } from './util.js'

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

/** `p` (or what `p()` returns or throws) must reject with a WalError of `code`; returns it. */
export async function rejectsWith(p: Promise<unknown> | (() => unknown), code: string): Promise<WalError> {
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (err) {
    assert.instance(err, WalError)
    assert.is((err as WalError).code, code, (err as Error).message)
    return err as WalError
  }
  throw new assert.Assertion({ message: `expected ${code}`, generated: false, operator: 'rejects' })
}

/** `fn` must throw a WalError of `code`; returns it. */
export function throws(fn: () => unknown, code: string): WalError {
  try {
    fn()
  } catch (e) {
    assert.instance(e, WalError)
    assert.is((e as WalError).code, code, (e as Error).message)
    return e as WalError
  }
  throw new assert.Assertion({ message: `expected ${code}, it returned`, operator: 'throws' })
}

/** Runs fn, which must throw a WalError with `code`; returns it. */
export function openFails(fn: () => unknown, code: string): WalError {
  try {
    fn()
  } catch (err) {
    assert.instance(err, WalError)
    assert.is((err as WalError).code, code)
    return err as WalError
  }
  throw new Error(`expected ${code}`)
}

/** The WalError code fn throws, or 'no error'. */
export function code(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    assert.instance(e, WalError, String(e))
    return (e as WalError).code
  }
  return 'no error'
}

/** The WalError code p rejects with, or 'no error'. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (e) {
    assert.instance(e, WalError, String(e))
    return (e as WalError).code
  }
  return 'no error'
}

/** A log of n synced standalone puts (`k1`…), closed; returns its directory. */
export function writeLog(backend: BackendName, opts: object, n: number, value: string): string {
  const dir = tmpDir()
  const w = WriteAheadLog.openSync(dir, { backend, ...opts })
  for (let i = 1; i <= n; i++) w.appendSync({ type: 'put', key: `k${i}`, value })
  w.closeSync()
  return dir
}

/** A closed log of `n` 200-byte puts across 4 KiB segments. */
export function writeSegments(backend: BackendName, n: number): string {
  return writeLog(backend, { segmentSize: 4096, preallocate: false }, n, 'v'.repeat(200))
}
