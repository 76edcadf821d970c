// Public option and operation types, and their validation. Everything a caller passes is
// checked here, before any byte is encoded or any file is touched.
import { WalError } from './errors.js'
import { MAX_PAYLOAD, TYPE_DEL, TYPE_PUT } from './format.js'

export type Bytes = string | Uint8Array
export type Operation = { type: 'put'; key: Bytes; value: Bytes } | { type: 'del'; key: Bytes }

export interface Options {
  /** 'always' (default): appends resolve after an fdatasync covering them. */
  sync?: 'always' | 'interval' | 'none'
  /** For sync: 'interval'; default 50. */
  syncIntervalMs?: number
  /** Bytes per segment file; default 64 MiB; at least 4096. A batch never spans segments. */
  segmentSize?: number
  /** Reserve each segment's full size when it is created; default true. */
  preallocate?: boolean
  /** What open does with damage; default 'tolerate-tail'. */
  recovery?: 'tolerate-tail' | 'point-in-time' | 'strict'
  /** Largest key + value in bytes, inclusive; default 64 MiB. */
  maxRecordSize?: number
  /** Inspect without lock, repair or writes. */
  readOnly?: boolean
  /** 'auto' (default): native, else the pure-TS backend. */
  backend?: 'auto' | 'native' | 'js'
}

export interface ResolvedOptions {
  sync: 'always' | 'interval' | 'none'
  syncIntervalMs: number
  segmentSize: number
  preallocate: boolean
  recovery: 'tolerate-tail' | 'point-in-time' | 'strict'
  maxRecordSize: number
  readOnly: boolean
  backend: 'auto' | 'native' | 'js'
}

const MIB = 1024 * 1024
const KNOWN = new Set(['sync', 'syncIntervalMs', 'segmentSize', 'preallocate', 'recovery', 'maxRecordSize', 'readOnly', 'backend'])

function invalid(message: string): WalError {
  return new WalError('WAL_INVALID', message)
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[], dflt: T): T {
  if (v === undefined) return dflt
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v))
    throw invalid(`Option '${name}' must be one of ${allowed.map((a) => `'${a}'`).join(', ')}; got ${JSON.stringify(v)}.`)
  return v as T
}

function integer(name: string, v: unknown, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw invalid(`Option '${name}' must be an integer from ${min} to ${max}; got ${String(v)}.`)
  return v
}

function bool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt
  if (typeof v !== 'boolean') throw invalid(`Option '${name}' must be true or false; got ${String(v)}.`)
  return v
}

export function resolveOptions(dir: unknown, options: unknown): ResolvedOptions {
  if (typeof dir !== 'string' || dir.length === 0) throw invalid('open(dir): dir must be a non-empty string path.')
  if (options === undefined || options === null) options = {}
  if (typeof options !== 'object') throw invalid('open(dir, options): options must be an object.')
  const o = options as Record<string, unknown>
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw invalid(`Unknown option '${k}'. Known options: ${[...KNOWN].join(', ')}.`)
  return {
    sync: oneOf('sync', o.sync, ['always', 'interval', 'none'] as const, 'always'),
    syncIntervalMs: integer('syncIntervalMs', o.syncIntervalMs, 1, 2 ** 31 - 1, 50),
    segmentSize: integer('segmentSize', o.segmentSize, 4096, 2 ** 40, 64 * MIB),
    preallocate: bool('preallocate', o.preallocate, true),
    recovery: oneOf('recovery', o.recovery, ['tolerate-tail', 'point-in-time', 'strict'] as const, 'tolerate-tail'),
    maxRecordSize: integer('maxRecordSize', o.maxRecordSize, 0, MAX_PAYLOAD, 64 * MIB),
    readOnly: bool('readOnly', o.readOnly, false),
    backend: oneOf('backend', o.backend, ['auto', 'native', 'js'] as const, 'auto'),
  }
}

/** An operation in the form the encoders take. */
export interface EncodedOp {
  type: number // TYPE_PUT or TYPE_DEL
  key: Uint8Array
  value: Uint8Array | undefined
}

// The built-in getters of typed arrays and buffers. Called directly (not through the
// object's own properties) they read the engine's internal slots, so a subclass or an
// own property that lies about `length`, or a Proxy, cannot make the bytes that are
// measured differ from the bytes that are encoded. Calling them runs no user code.
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object
function getter(proto: object, name: PropertyKey): ((this: unknown) => unknown) | undefined {
  return Object.getOwnPropertyDescriptor(proto, name)?.get as ((this: unknown) => unknown) | undefined
}
const taTag = getter(TypedArrayPrototype, Symbol.toStringTag)!
const taLength = getter(TypedArrayPrototype, 'length')!
const taBuffer = getter(TypedArrayPrototype, 'buffer')!
const taOffset = getter(TypedArrayPrototype, 'byteOffset')!
const abResizable = getter(ArrayBuffer.prototype, 'resizable')
const abDetached = getter(ArrayBuffer.prototype, 'detached')
const sabGrowable = typeof SharedArrayBuffer === 'function' ? getter(SharedArrayBuffer.prototype, 'growable') : undefined
const isSharedBuffer = (b: object): b is SharedArrayBuffer => typeof SharedArrayBuffer === 'function' && Object.prototype.toString.call(b) === '[object SharedArrayBuffer]'

function call<T>(fn: (this: unknown) => unknown, self: unknown): T {
  return Reflect.apply(fn, self, []) as T
}

function isDetached(buf: ArrayBuffer): boolean {
  if (abDetached) return call<boolean>(abDetached, buf)
  try {
    new Uint8Array(buf, 0, 0)
    return false
  } catch {
    return true
  }
}

/**
 * The bytes of one key or value, taken once: a plain Uint8Array whose length cannot
 * change before it is encoded. Strings become UTF-8. A view whose buffer can be resized
 * or grown (by this thread or a worker) is copied; any other view is re-made from its
 * internal buffer, offset and length when it is not a plain Buffer or Uint8Array.
 */
function bytes(v: unknown, what: string): Uint8Array {
  if (typeof v === 'string') return Buffer.from(v, 'utf8')
  if (v === null || typeof v !== 'object' || call<string | undefined>(taTag, v) !== 'Uint8Array') {
    const got = v === null ? 'null' : typeof v === 'object' ? (ArrayBuffer.isView(v) ? call<string | undefined>(taTag, v) ?? 'DataView' : 'an object that is not a Uint8Array') : typeof v
    throw invalid(`${what} must be a string or a Uint8Array (Buffer); got ${got}.`)
  }
  const len = call<number>(taLength, v)
  const buffer = call<ArrayBuffer | SharedArrayBuffer>(taBuffer, v)
  if (isSharedBuffer(buffer)) {
    if (sabGrowable && call<boolean>(sabGrowable, buffer)) return Uint8Array.prototype.slice.call(v as Uint8Array)
  } else {
    if (len === 0 && isDetached(buffer)) throw invalid(`${what} is a Uint8Array whose ArrayBuffer is detached (transferred); pass the bytes before transferring them.`)
    if (abResizable && call<boolean>(abResizable, buffer)) return Uint8Array.prototype.slice.call(v as Uint8Array)
  }
  const proto = Object.getPrototypeOf(v)
  if ((proto === Buffer.prototype || proto === Uint8Array.prototype) && !Object.prototype.hasOwnProperty.call(v, 'length')) return v as Uint8Array
  return new Uint8Array(buffer, call<number>(taOffset, v), len)
}

/** The fields of an operation, each read once (a getter runs once, here). */
interface RawOp {
  type: unknown
  key: unknown
  value: unknown
}

function readOp(op: unknown, where: string): RawOp {
  if (op === null || typeof op !== 'object') throw invalid(`${where} must be an object like { type: 'put', key, value }.`)
  const o = op as Record<string, unknown>
  return { type: o.type, key: o.key, value: o.value }
}

/** Validates fields already read; runs no user code, so nothing can change the bytes taken. */
function checkOp(raw: RawOp, maxRecordSize: number, where: string): EncodedOp {
  let type: number
  let value: Uint8Array | undefined
  if (raw.type === 'put') type = TYPE_PUT
  else if (raw.type === 'del') type = TYPE_DEL
  else throw invalid(`${where}: type must be 'put' or 'del'; got ${typeof raw.type === 'string' ? JSON.stringify(raw.type) : String(raw.type)}.`)
  const key = bytes(raw.key, `${where}: key`)
  if (type === TYPE_PUT) value = bytes(raw.value, `${where}: value`)
  else if (raw.value !== undefined) throw invalid(`${where}: a 'del' operation takes no value (got one); use { type: 'put', key, value } to store a value.`)
  const size = key.length + (value ? value.length : 0)
  if (size > maxRecordSize)
    throw new WalError(
      'WAL_TOO_LARGE',
      `${where}: key + value is ${size} bytes, over maxRecordSize (${maxRecordSize}). Split the value or open with a larger maxRecordSize.`,
    )
  return { type, key, value }
}

/** Validates one operation; `where` names it in messages ("appendBatch: operation 3"). */
export function normalizeOp(op: unknown, maxRecordSize: number, where: string): EncodedOp {
  return checkOp(readOp(op, where), maxRecordSize, where)
}

/**
 * Validates a batch. Every operation's fields are read first, then all are checked and
 * their bytes taken: a getter of a later operation cannot resize, detach or rewrite the
 * bytes of an earlier one after they were measured.
 */
export function normalizeBatch(ops: unknown, maxRecordSize: number): EncodedOp[] {
  if (!Array.isArray(ops)) throw invalid('appendBatch(ops): ops must be an array of operations.')
  const n = ops.length
  if (n === 0) throw invalid('appendBatch(ops): a batch needs at least one operation.')
  const raw: RawOp[] = new Array(n)
  for (let i = 0; i < n; i++) raw[i] = readOp(ops[i], `appendBatch: operation ${i}`)
  const out: EncodedOp[] = new Array(n)
  for (let i = 0; i < n; i++) out[i] = checkOp(raw[i], maxRecordSize, `appendBatch: operation ${i}`)
  return out
}
