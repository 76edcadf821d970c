// The N-API layer never trusts its arguments: wrong types, detached or resized buffers,
// lying subclasses, overlapping views and out-of-range LSNs are TypeErrors, never a crash,
// a silent empty write or a read of memory the caller no longer owns.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import { join, resolve } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { IX_STRIDE, RECORD_HEADER_SIZE, SCAN_END, TYPE_DEL, TYPE_PUT } from '../lib/format.js'
import type { NativeAddon } from '../lib/native-addon.js'
import { ADDON_FORMAT, checkAddonFormat, loadAddon } from '../lib/native-addon.js'
import { tmpDir } from './helpers/util.js'

const loaded = loadAddon()
if (!loaded.addon) throw new Error(`native addon not built: ${loaded.error?.message}`)
const addon: NativeAddon = loaded.addon

const MAX = Number.MAX_SAFE_INTEGER // 2^53 - 1

/** A Uint8Array whose ArrayBuffer has been transferred away (detached). */
function detached(n = 8): Uint8Array {
  const b = new Uint8Array(n).fill(7)
  structuredClone(b.buffer, { transfer: [b.buffer as ArrayBuffer] })
  assert.is(b.byteLength, 0)
  return b
}

/** Asserts fn throws a TypeError synchronously (not a returned, rejected promise). */
function throwsType(fn: () => unknown, re?: RegExp, label = ''): void {
  let result: unknown
  try {
    result = fn()
  } catch (err) {
    assert.instance(err, TypeError, `${label}: ${String(err)}`)
    if (re) assert.match((err as Error).message, re, label)
    return
  }
  if (result instanceof Promise) result.catch(() => {})
  assert.unreachable(`${label}: did not throw (returned ${describe(result)})`)
}

function describe(v: unknown): string {
  if (typeof v === 'symbol' || typeof v === 'bigint') return String(v) + (typeof v === 'bigint' ? 'n' : '')
  if (v instanceof Promise) return 'a Promise'
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${v.byteLength})`
  try {
    return JSON.stringify(v) ?? String(v)
  } catch {
    return String(v)
  }
}

interface Rec {
  type: number
  flags: number
  aux: number
  lsn: number
  mark: number
  key: Buffer
  value: Buffer
}

/** Decodes buf[0, end) with the native scanner; every byte must be whole, valid records. */
function decode(buf: Uint8Array, end: number): Rec[] {
  const [, status, stop, , index] = addon.scan(buf, 0, end)
  assert.is(status, SCAN_END)
  assert.is(stop, end)
  const out: Rec[] = []
  for (let i = 0; i < index.length; i += IX_STRIDE) {
    const pos = index[i]
    const length = index[i + 1]
    const aux = index[i + 3]
    const body = Buffer.from(buf.buffer, buf.byteOffset + pos + RECORD_HEADER_SIZE, length)
    out.push({
      type: index[i + 2] & 0xff,
      flags: index[i + 2] >> 8,
      aux,
      lsn: index[i + 4],
      mark: index[i + 5],
      key: Buffer.from(body.subarray(0, Math.min(aux, length))),
      value: Buffer.from(body.subarray(Math.min(aux, length))),
    })
  }
  return out
}

const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s))

let fileCounter = 0
function tempFd(): { fd: number; path: string; close(): void } {
  const dir = tmpDir('native-binding')
  fs.mkdirSync(dir, { recursive: true })
  const path = join(dir, `f${++fileCounter}`)
  const fd = fs.openSync(path, 'w+')
  return { fd, path, close: () => fs.closeSync(fd) }
}

// --- Detached buffers --------------------------------------------------------------

test('encodeRecord rejects a detached out, key or value', () => {
  const out = () => new Uint8Array(256)
  throwsType(() => addon.encodeRecord(detached(256), 0, TYPE_PUT, 1, 0, b('k'), b('v')), /detached/, 'out')
  throwsType(() => addon.encodeRecord(out(), 0, TYPE_PUT, 1, 0, detached(), b('v')), /detached/, 'key')
  throwsType(() => addon.encodeRecord(out(), 0, TYPE_PUT, 1, 0, b('k'), detached()), /detached/, 'value')
  throwsType(() => addon.encodeRecord(out(), 0, TYPE_DEL, 1, 0, detached(), undefined), /detached/, 'DEL key')
  // A detached key is refused, not encoded as an empty key: nothing may be written.
  const o = out()
  throwsType(() => addon.encodeRecord(o, 0, TYPE_PUT, 1, 0, detached(), b('v')), /detached/, 'key, no write')
  assert.ok(o.every((x) => x === 0), 'nothing was written')
})

test('encodeBatch rejects a detached out, types, key or value', () => {
  const args = () => ({
    out: new Uint8Array(512),
    types: Uint8Array.of(TYPE_PUT, TYPE_DEL),
    keys: [b('a'), b('b')],
    values: [b('1'), undefined] as (Uint8Array | undefined)[],
  })
  let a = args()
  throwsType(() => addon.encodeBatch(detached(512), 0, a.types, a.keys, a.values, 1, 0), /detached/, 'out')
  a = args()
  throwsType(() => addon.encodeBatch(a.out, 0, detached(2), a.keys, a.values, 1, 0), /detached/, 'types')
  a = args()
  a.keys[1] = detached()
  throwsType(() => addon.encodeBatch(a.out, 0, a.types, a.keys, a.values, 1, 0), /detached/, 'key')
  assert.ok(a.out.every((x) => x === 0), 'nothing was written')
  a = args()
  a.values[0] = detached()
  throwsType(() => addon.encodeBatch(a.out, 0, a.types, a.keys, a.values, 1, 0), /detached/, 'value')
})

test('encodeBatch reads its buffers only after the arrays stop running JS (getters cannot detach them)', () => {
  // An index getter on keys/values runs JS in the middle of napi_get_element. If it detaches
  // a buffer the binding already took a pointer to, the encoder would read freed memory.
  for (const victim of ['out', 'types', 'key0', 'value0'] as const) {
    const out = new Uint8Array(512)
    const types = Uint8Array.of(TYPE_PUT, TYPE_PUT)
    const key0 = b('key-zero')
    const value0 = b('value-zero')
    const keys: Uint8Array[] = [key0, b('b')]
    const values: Uint8Array[] = [value0, b('2')]
    const target = { out, types, key0, value0 }[victim]
    let kept: ArrayBuffer | undefined
    Object.defineProperty(values, 1, {
      get() {
        kept = structuredClone(target.buffer as ArrayBuffer, { transfer: [target.buffer as ArrayBuffer] })
        return b('2')
      },
    })
    throwsType(() => addon.encodeBatch(out, 0, types, keys, values, 1, 0), /detached/, victim)
    assert.ok(kept instanceof ArrayBuffer, 'the getter ran')
  }
})

test('encodeCheckpoint rejects a detached out', () => {
  throwsType(() => addon.encodeCheckpoint(detached(64), 0, 1, 0, 1), /detached/)
})

test('crc32c rejects detached data', () => {
  throwsType(() => addon.crc32c(detached()), /detached/)
  throwsType(() => addon.crc32c(detached(), 5), /detached/)
})

test('scan and findNextRecord reject a detached buffer', () => {
  throwsType(() => addon.scan(detached(64), 0, 0), /detached/, 'scan')
  throwsType(() => addon.findNextRecord(detached(64), 0, 0), /detached/, 'findNextRecord')
})

test('writeBlocking, write, readScanBlocking and readScan reject a detached buffer before any I/O', () => {
  const f = tempFd()
  try {
    throwsType(() => addon.writeBlocking(f.fd, detached(), 0, 0, 0), /detached/, 'writeBlocking')
    throwsType(() => addon.write(f.fd, detached(), 0, 0, 0, false), /detached/, 'write')
    throwsType(() => addon.write(f.fd, detached(), 0, 0, 0, true), /detached/, 'write+sync')
    throwsType(() => addon.readScanBlocking(f.fd, detached(), 0), /detached/, 'readScanBlocking')
    throwsType(() => addon.readScan(f.fd, detached(), 0), /detached/, 'readScan')
    assert.is(fs.fstatSync(f.fd).size, 0)
  } finally {
    f.close()
  }
})

test('an empty but attached Uint8Array stays valid everywhere', async () => {
  const empty = new Uint8Array(0)
  assert.is(addon.crc32c(empty), 0)
  assert.is(addon.crc32c(new Uint8Array(new ArrayBuffer(0))), 0)
  assert.is(addon.crc32c(empty, 123), 123)
  const out = new Uint8Array(256)
  const end = addon.encodeRecord(out, 0, TYPE_PUT, 1, 0, empty, empty)
  assert.is(end, RECORD_HEADER_SIZE)
  const [r] = decode(out, end)
  assert.is(r.key.length, 0)
  assert.is(r.value.length, 0)
  const end2 = addon.encodeBatch(out, 0, Uint8Array.of(TYPE_DEL), [empty], [empty], 5, 0)
  assert.is(decode(out, end2).length, 3)
  assert.equal(addon.scan(empty, 0, 0).slice(0, 4), [0, SCAN_END, 0, 0])
  assert.is(addon.findNextRecord(empty, 0, 0), 0)
  const f = tempFd()
  try {
    addon.writeBlocking(f.fd, empty, 0, 0, 0)
    await addon.write(f.fd, empty, 0, 0, 0, false)
    assert.is(addon.readScanBlocking(f.fd, empty, 0)[0], 0)
    assert.is((await addon.readScan(f.fd, empty, 0))[0], 0)
  } finally {
    f.close()
  }
})

// --- Lengths come from the engine, not from JS properties ----------------------------

// Subclasses whose JS-visible length, byteLength and byteOffset lie.
class Liar extends Uint8Array {}
class ShortLiar extends Uint8Array {}
for (const [Cls, n] of [[Liar, 1 << 20], [ShortLiar, 1]] as const)
  for (const prop of ['length', 'byteLength', 'byteOffset']) Object.defineProperty(Cls.prototype, prop, { get: () => n })

test('a Uint8Array subclass whose length/byteLength lie encodes exactly its real bytes', () => {
  for (const Cls of [Liar, ShortLiar]) {
    const key = Cls.from(Buffer.from('real-key'))
    const value = Cls.from(Buffer.from('real-value-bytes'))
    assert.is(new Uint8Array(key.buffer).length, 8)
    const out = new Uint8Array(256)
    const end = addon.encodeRecord(out, 0, TYPE_PUT, 7, 3, key, value)
    assert.is(end, RECORD_HEADER_SIZE + 8 + 16)
    const [r] = decode(out, end)
    assert.is(r.key.toString(), 'real-key')
    assert.is(r.value.toString(), 'real-value-bytes')
    assert.is(addon.crc32c(key), addon.crc32c(Buffer.from('real-key')))

    const bend = addon.encodeBatch(out, 0, Cls.from([TYPE_PUT]), [key], [value], 9, 0)
    const recs = decode(out, bend)
    assert.is(recs.length, 3)
    assert.is(recs[1].key.toString(), 'real-key')
    assert.is(recs[1].value.toString(), 'real-value-bytes')

    // As an output buffer, a lying length cannot buy room that is not there.
    const small = new Cls(40)
    throwsType(() => addon.encodeRecord(small, 0, TYPE_PUT, 1, 0, b('12345678'), b('x')), /too small/, 'out')
    throwsType(() => addon.scan(small, 0, 41), /outside/, 'scan end')
    throwsType(() => addon.writeBlocking(2147483647, small, 0, 41, 0), /outside/, 'write range')
  }
})

test('a length-tracking view on a resizable ArrayBuffer uses its current length', () => {
  const ab = new (ArrayBuffer as any)(4, { maxByteLength: 64 }) as ArrayBuffer & { resize(n: number): void }
  const key = new Uint8Array(ab) // length-tracking
  ab.resize(10)
  key.set(Buffer.from('0123456789'))
  const out = new Uint8Array(256)
  let end = addon.encodeRecord(out, 0, TYPE_PUT, 1, 0, key, undefined)
  assert.is(decode(out, end)[0].key.toString(), '0123456789')
  assert.is(addon.crc32c(key), addon.crc32c(Buffer.from('0123456789')))
  ab.resize(3)
  end = addon.encodeRecord(out, 0, TYPE_PUT, 1, 0, key, undefined)
  assert.is(decode(out, end)[0].key.toString(), '012')
  assert.is(addon.crc32c(key), addon.crc32c(Buffer.from('012')))

  // An output buffer that shrank offers only its current length.
  const outAb = new (ArrayBuffer as any)(256, { maxByteLength: 256 }) as ArrayBuffer & { resize(n: number): void }
  const grow = new Uint8Array(outAb)
  outAb.resize(40)
  throwsType(() => addon.encodeRecord(grow, 0, TYPE_PUT, 1, 0, b('12345678'), b('x')), /too small/)
  assert.is(addon.encodeRecord(grow, 0, TYPE_PUT, 1, 0, b('12345678'), undefined), 40)
})

test('encoding rejects inputs that overlap the bytes being written', () => {
  const out = new Uint8Array(256)
  throwsType(() => addon.encodeRecord(out, 0, TYPE_PUT, 1, 0, out.subarray(0, 8), b('v')), /overlap/, 'key')
  throwsType(() => addon.encodeRecord(out, 0, TYPE_PUT, 1, 0, b('k'), out.subarray(20, 30)), /overlap/, 'value')
  throwsType(() => addon.encodeRecord(out, 40, TYPE_PUT, 1, 0, b('k'), out.subarray(72, 74)), /overlap/, 'value tail')
  out[100] = TYPE_PUT
  throwsType(() => addon.encodeBatch(out, 0, out.subarray(100, 101), [b('k')], [b('v')], 1, 0), /overlap/, 'types')
  throwsType(() => addon.encodeBatch(out, 0, Uint8Array.of(TYPE_PUT), [out.subarray(50, 52)], [b('v')], 1, 0), /overlap/, 'batch key')
  throwsType(() => addon.encodeBatch(out, 8, Uint8Array.of(TYPE_PUT), [b('k')], [out.subarray(0, 9)], 1, 0), /overlap/, 'batch value')
  out.fill(0)
  // The same ArrayBuffer is fine when the ranges are disjoint.
  const key = out.subarray(200, 208)
  key.set(Buffer.from('disjoint'))
  const end = addon.encodeRecord(out, 0, TYPE_PUT, 1, 0, key, out.subarray(0, 0))
  assert.is(decode(out, end)[0].key.toString(), 'disjoint')
  const bend = addon.encodeBatch(out, 0, out.subarray(199, 200).fill(TYPE_PUT), [key], [undefined], 2, 0)
  assert.is(decode(out, bend)[1].key.toString(), 'disjoint')
})

// --- LSN limits ------------------------------------------------------------------------

test('LSN limits are exact: 2^53-1 is accepted, 2^53 and batch overflow are rejected', () => {
  const out = new Uint8Array(1024)
  let end = addon.encodeRecord(out, 0, TYPE_PUT, MAX, MAX, b('k'), b('v'))
  assert.is(decode(out, end)[0].lsn, MAX)
  throwsType(() => addon.encodeRecord(out, 0, TYPE_PUT, MAX + 1, 0, b('k'), b('v')), undefined, 'lsn 2^53')
  throwsType(() => addon.encodeRecord(out, 0, TYPE_PUT, 0, 0, b('k'), b('v')), undefined, 'lsn 0')
  throwsType(() => addon.encodeRecord(out, 0, TYPE_PUT, 5, 6, b('k'), b('v')), undefined, 'mark > lsn')
  throwsType(() => addon.encodeRecord(out, 0, TYPE_PUT, 1, MAX + 1, b('k'), b('v')), undefined, 'mark 2^53')

  const t1 = Uint8Array.of(TYPE_PUT)
  const t2 = Uint8Array.of(TYPE_PUT, TYPE_DEL)
  const t3 = Uint8Array.of(TYPE_PUT, TYPE_PUT, TYPE_PUT)
  end = addon.encodeBatch(out, 0, t1, [b('a')], [b('1')], MAX, 0)
  assert.equal(decode(out, end).map((r) => r.lsn), [MAX, MAX, MAX])
  end = addon.encodeBatch(out, 0, t2, [b('a'), b('b')], [b('1'), undefined], MAX - 1, MAX - 2)
  assert.equal(decode(out, end).map((r) => r.lsn), [MAX - 1, MAX - 1, MAX, MAX])
  throwsType(() => addon.encodeBatch(out, 0, t2, [b('a'), b('b')], [b('1'), undefined], MAX, 0), undefined, 'first=MAX count=2')
  throwsType(() => addon.encodeBatch(out, 0, t3, [b('a'), b('b'), b('c')], [b('1'), b('2'), b('3')], MAX - 1, 0), undefined, 'count=3')
  throwsType(() => addon.encodeBatch(out, 0, t1, [b('a')], [b('1')], MAX + 1, 0), undefined, 'first 2^53')
  throwsType(() => addon.encodeBatch(out, 0, t1, [b('a')], [b('1')], 0, 0), undefined, 'first 0')
  throwsType(() => addon.encodeBatch(out, 0, t1, [b('a')], [b('1')], 5, 5), undefined, 'mark >= first')

  end = addon.encodeCheckpoint(out, 0, MAX, MAX, MAX)
  assert.is(decode(out, end)[0].lsn, MAX)
  throwsType(() => addon.encodeCheckpoint(out, 0, MAX + 1, 0, 1), undefined, 'checkpoint lsn 2^53')
  throwsType(() => addon.encodeCheckpoint(out, 0, 1, 0, MAX + 1), undefined, 'checkpointLsn 2^53')
  throwsType(() => addon.encodeCheckpoint(out, 0, 0, 0, 0), undefined, 'checkpoint lsn 0')
})

// --- Wrong types -----------------------------------------------------------------------

type Kind = 'bytes' | 'optBytes' | 'uint' | 'optUint' | 'array' | 'bool' | 'fd'

const COMMON: unknown[] = [undefined, null, 'x', {}, [], 1n, Symbol('s'), () => 0, true, new Date(0)]
const BAD: Record<Kind, () => unknown[]> = {
  bytes: () => [
    ...COMMON,
    0,
    1,
    new Uint16Array(2),
    new Uint8ClampedArray(2),
    new Int8Array(2),
    new Float64Array(1),
    new DataView(new ArrayBuffer(2)),
    new ArrayBuffer(2),
    [1, 2],
    { length: 2, 0: 1, 1: 2 },
    detached(),
  ],
  optBytes: () => BAD.bytes().filter((v) => v !== undefined && v !== null),
  uint: () => [...COMMON, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, '1', new Number(1), new Uint8Array(1)],
  optUint: () => [...BAD.uint().filter((v) => v !== undefined), 2 ** 32],
  array: () => [...COMMON.filter((v) => !Array.isArray(v)), new Uint8Array(1), { length: 1, 0: new Uint8Array(1) }, 'ab'],
  bool: () => [undefined, null, 0, 1, 'true', {}, 1n, Symbol('s'), new Boolean(true)],
  fd: () => [...BAD.uint(), 2 ** 31],
}

test('wrong types for every argument throw TypeError rather than crash', async () => {
  const f = tempFd()
  try {
    const fd = f.fd
    const out = () => new Uint8Array(512)
    const cases: [string, (...a: any[]) => unknown, [Kind, () => unknown][]][] = [
      ['crc32c', addon.crc32c, [['bytes', () => b('abc')], ['optUint', () => 1]]],
      [
        'encodeRecord',
        addon.encodeRecord,
        [
          ['bytes', out],
          ['uint', () => 0],
          ['uint', () => TYPE_PUT],
          ['uint', () => 1],
          ['uint', () => 0],
          ['bytes', () => b('k')],
          ['optBytes', () => b('v')],
        ],
      ],
      [
        'encodeBatch',
        addon.encodeBatch,
        [
          ['bytes', out],
          ['uint', () => 0],
          ['bytes', () => Uint8Array.of(TYPE_PUT)],
          ['array', () => [b('k')]],
          ['array', () => [b('v')]],
          ['uint', () => 1],
          ['uint', () => 0],
        ],
      ],
      [
        'encodeCheckpoint',
        addon.encodeCheckpoint,
        [['bytes', out], ['uint', () => 0], ['uint', () => 1], ['uint', () => 0], ['uint', () => 0]],
      ],
      ['scan', addon.scan, [['bytes', out], ['uint', () => 0], ['uint', () => 0]]],
      ['findNextRecord', addon.findNextRecord, [['bytes', out], ['uint', () => 0], ['uint', () => 0]]],
      [
        'writeBlocking',
        addon.writeBlocking,
        [['fd', () => fd], ['bytes', out], ['uint', () => 0], ['uint', () => 0], ['uint', () => 0]],
      ],
      [
        'write',
        addon.write,
        [['fd', () => fd], ['bytes', out], ['uint', () => 0], ['uint', () => 0], ['uint', () => 0], ['bool', () => false]],
      ],
      ['readScanBlocking', addon.readScanBlocking, [['fd', () => fd], ['bytes', out], ['uint', () => 0]]],
      ['readScan', addon.readScan, [['fd', () => fd], ['bytes', out], ['uint', () => 0]]],
      ['fdatasyncBlocking', addon.fdatasyncBlocking, [['fd', () => fd]]],
      ['fdatasync', addon.fdatasync, [['fd', () => fd]]],
      ['zeroFillBlocking', addon.zeroFillBlocking, [['fd', () => fd], ['uint', () => 0], ['uint', () => 0]]],
      ['zeroFill', addon.zeroFill, [['fd', () => fd], ['uint', () => 0], ['uint', () => 0]]],
      ['findNonZeroBlocking', addon.findNonZeroBlocking, [['fd', () => fd], ['uint', () => 0]]],
      ['findNonZero', addon.findNonZero, [['fd', () => fd], ['uint', () => 0]]],
      ['tryLock', addon.tryLock, [['fd', () => fd]]],
      ['unlock', addon.unlock, [['fd', () => fd]]],
      ...(process.platform === 'linux'
        ? [['bindAbstract', (name: Uint8Array) => fs.closeSync(addon.bindAbstract(name)), [['bytes', () => Buffer.from(`\0fastwal-args:${process.pid}:${Math.random()}`)]]] as const]
        : []),
    ]
    for (const [name, fn, params] of cases) {
      // The valid template itself works (so each failure below is down to one argument).
      const ok = fn(...params.map(([, make]) => make()))
      if (ok instanceof Promise) await ok
      for (let i = 0; i < params.length; i++) {
        for (const bad of BAD[params[i][0]]()) {
          const args = params.map(([, make]) => make())
          args[i] = bad
          throwsType(() => fn(...args), undefined, `${name} arg ${i} = ${describe(bad)}`)
        }
      }
      // Too few arguments: the missing ones are undefined.
      if (params.some(([k]) => k !== 'optBytes' && k !== 'optUint')) throwsType(() => fn(), undefined, `${name}()`)
    }

    // Elements of encodeBatch's arrays, and their lengths.
    const bad: [string, unknown[], unknown[], Uint8Array][] = [
      ['key not bytes', ['k'], [b('v')], Uint8Array.of(TYPE_PUT)],
      ['key undefined', [undefined], [b('v')], Uint8Array.of(TYPE_PUT)],
      ['key clamped', [new Uint8ClampedArray(1)], [b('v')], Uint8Array.of(TYPE_PUT)],
      ['value not bytes', [b('k')], [1], Uint8Array.of(TYPE_PUT)],
      ['value Uint16Array', [b('k')], [new Uint16Array(1)], Uint8Array.of(TYPE_PUT)],
      ['DEL with value', [b('k')], [b('v')], Uint8Array.of(TYPE_DEL)],
      ['bad type byte', [b('k')], [b('v')], Uint8Array.of(9)],
      ['keys shorter', [], [b('v')], Uint8Array.of(TYPE_PUT)],
      ['values shorter', [b('k'), b('k')], [b('v')], Uint8Array.of(TYPE_PUT, TYPE_PUT)],
      ['types shorter', [b('k'), b('k')], [b('v'), b('v')], Uint8Array.of(TYPE_PUT)],
      ['empty batch', [], [], new Uint8Array(0)],
      ['sparse', new Array(3), new Array(3), new Uint8Array(3).fill(TYPE_PUT)],
    ]
    for (const [label, keys, values, types] of bad)
      throwsType(() => addon.encodeBatch(out(), 0, types, keys as any, values as any, 1, 0), undefined, label)
    const huge: unknown[] = []
    huge.length = 2 ** 32 - 1
    throwsType(() => addon.encodeBatch(out(), 0, new Uint8Array(4), huge as any, huge as any, 1, 0), undefined, 'huge sparse')
    // A getter that throws propagates its own exception, not a second one.
    const throwing: Uint8Array[] = [b('k')]
    Object.defineProperty(throwing, 0, {
      get() {
        throw new RangeError('from getter')
      },
    })
    assert.throws(
      () => addon.encodeBatch(out(), 0, Uint8Array.of(TYPE_PUT), throwing, [b('v')], 1, 0),
      (err: unknown) => err instanceof RangeError && err.message === 'from getter',
    )
    // Types and key of encodeRecord that are in range but not PUT/DEL.
    throwsType(() => addon.encodeRecord(out(), 0, 3, 1, 0, b('k'), undefined), /PUT or DEL/)
    throwsType(() => addon.encodeRecord(out(), 0, TYPE_DEL, 1, 0, b('k'), b('v')), /DEL/)
  } finally {
    f.close()
  }
})

// --- Pool jobs keep their buffer ------------------------------------------------------

test('write and readScan keep their buffer alive while on the pool', async () => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const f = tempFd()
  try {
    let src: Uint8Array | undefined = new Uint8Array(4096)
    const end = addon.encodeRecord(src, 0, TYPE_PUT, 42, 0, b('kept'), b('alive'))
    const w = addon.write(f.fd, src, 0, end, 0, true)
    src = undefined
    gc()
    await w
    const r = addon.readScan(f.fd, new Uint8Array(4096), 0)
    gc()
    const [bytes, status, stop, , index] = await r
    assert.is(bytes, end)
    assert.is(status, SCAN_END)
    assert.is(stop, end)
    assert.is(index[4], 42)
    // Not covered: detaching a buffer while its job is on the pool. N-API cannot pin an
    // ArrayBuffer; the TypeScript layer owns these buffers and never detaches them.
  } finally {
    f.close()
  }
})

// --- Exports ---------------------------------------------------------------------------

test('the addon exports exactly the documented functions', () => {
  const fns = Object.keys(addon).filter((k) => typeof (addon as unknown as Record<string, unknown>)[k] === 'function')
  assert.equal(fns.sort(), [
    'crc32c',
    'crc32cImplementation',
    'encodeBatch',
    'encodeCheckpoint',
    'encodeRecord',
    'fdatasync',
    'fdatasyncBlocking',
    'findNextRecord',
    'findNonZero',
    'findNonZeroBlocking',
    'readScan',
    'readScanBlocking',
    'scan',
    'tryLock',
    'unlock',
    'write',
    'writeBlocking',
    'zeroFill',
    'zeroFillBlocking',
    'bindAbstract',
  ].sort())
})

if (process.platform === 'linux') {
  test('bindAbstract holds exactly the address bytes it is given until the fd closes; refuses a non-abstract or oversized address', () => {
    const name = `\0fastwal-test:${process.pid}:${Math.random().toString(36).slice(2)}`
    const exact = Buffer.from(name, 'latin1')
    const padded = Buffer.alloc(108)
    exact.copy(padded)
    const a = addon.bindAbstract(exact)
    assert.ok(a >= 0)
    assert.is(addon.bindAbstract(exact), -1, 'the same bytes: taken')
    const b = addon.bindAbstract(padded) // the NUL-padded form is another address
    assert.ok(b >= 0)
    assert.is(addon.bindAbstract(padded), -1)
    assert.match(fs.readFileSync('/proc/net/unix', 'latin1'), `@${name.slice(1)}@@@@`)
    fs.closeSync(a)
    fs.closeSync(b)
    for (const address of [exact, padded]) fs.closeSync(addon.bindAbstract(address)) // free again
    for (const bad of [Buffer.from('/tmp/not-abstract'), Buffer.alloc(0), Buffer.from([0]), Buffer.alloc(109)])
      assert.throws(() => addon.bindAbstract(bad), (err: unknown) => (err as { syscall?: string; errno?: number }).syscall === 'bind' && (err as { errno?: number }).errno === -22, `refused (EINVAL): ${bad.length} bytes`)
  })
}

test('tryLock reports a lock held through another open file as false, and unlock releases it', () => {
  const f = tempFd()
  const other = fs.openSync(f.path, 'r')
  try {
    assert.is(addon.tryLock(f.fd), true)
    assert.is(addon.tryLock(other), false)
    assert.is(addon.unlock(f.fd), undefined)
    assert.is(addon.tryLock(other), true)
    addon.unlock(other)
  } finally {
    fs.closeSync(other)
    f.close()
  }
  assert.throws(() => addon.tryLock(2147483647), (err: unknown) => (err as { syscall?: string }).syscall !== undefined)
})

// --- Format constants --------------------------------------------------------------------

test('the addon was compiled with the format constants of lib/format.ts', () => {
  assert.is(checkAddonFormat(addon), undefined)
  assert.equal({ ...addon.format }, { ...ADDON_FORMAT })
  assert.ok(Object.isFrozen(addon.format), 'format is frozen')
})

test('a format mismatch names the constant, both values and the fix', () => {
  for (const [name, want] of Object.entries(ADDON_FORMAT)) {
    const doctored = { ...addon, format: { ...addon.format, [name]: want + 1 } }
    const msg = checkAddonFormat(doctored)
    assert.type(msg, 'string', name)
    assert.ok(msg!.includes(`format.${name} is ${want + 1} in the addon but ${want} in lib/format.ts`), msg)
    assert.ok(msg!.includes('npm rebuild fastwal'), msg)
  }
  const missingOne: Record<string, number> = { ...addon.format }
  delete missingOne.scanZero
  assert.match(checkAddonFormat({ format: missingOne })!, /format\.scanZero is undefined in the addon but 3 /)
  for (const format of [undefined, null, 7])
    assert.match(checkAddonFormat({ format })!, /no format constants.*npm rebuild fastwal/, String(format))
})

test('loadAddon refuses an addon built with other format constants, as a load failure', () => {
  // A fresh process: loadAddon caches its answer, and node-gyp-build is stubbed there to
  // hand out the real addon with one constant changed.
  const child = `
    const ngb = require.resolve('node-gyp-build', { paths: [process.env.T_LIB_DIR] })
    const real = require(ngb)
    require.cache[ngb].exports = (dir) => {
      const a = real(dir)
      return { ...a, format: { ...a.format, flagBatch: 3 } }
    }
    const r = require(process.env.T_MODULE).loadAddon()
    process.stdout.write(JSON.stringify({ addon: r.addon !== undefined, error: r.error && r.error.message }))
  `
  const libDir = resolve(__dirname, '..', 'lib')
  const env: NodeJS.ProcessEnv = { ...process.env, T_LIB_DIR: libDir, T_MODULE: join(libDir, 'native-addon.ts') }
  delete env.FASTWAL_NATIVE_DIR
  delete env.NODE_OPTIONS
  const r = spawnSync(process.execPath, ['-r', require.resolve('tsx/cjs'), '-e', child], { env, encoding: 'utf8', timeout: 60_000 })
  assert.is(r.status, 0, r.stderr)
  const got = JSON.parse(r.stdout) as { addon: boolean; error?: string }
  assert.is(got.addon, false)
  assert.ok(got.error?.includes('format.flagBatch is 3 in the addon but 1 in lib/format.ts'), got.error)
  assert.ok(got.error?.includes('npm rebuild fastwal'), got.error)
})

test.run()
