// Public option and operation types, and their validation. Everything a caller passes is
// checked here, before any byte is encoded or any file is touched.
import { byteLength, isDetached, isUint8Array } from './bytes.js'
import { WalError } from './errors.js'
import { encodeWith, resolveEncoding, type Encoding, type Encodings, type Input, type Transcoder } from './encoding.js'
import { MAX_PAYLOAD, TYPE_DEL, TYPE_PUT } from './format.js'

/**
 * A key or value under the default 'buffer' encoding: a string is stored as its UTF-8 bytes.
 *
 * @example
 * ```ts
 * const key: Bytes = 'user:1'
 * const value: Bytes = new Uint8Array([1, 2, 3])
 * ```
 */
export type Bytes = string | Uint8Array

/**
 * One change to log: the same shape as abstract-level's batch operations. `K` and `V` are
 * what replay yields under the handle's encodings (Buffer by default, which takes
 * {@link Bytes} going in).
 *
 * @example
 * ```ts
 * await wal.append({ type: 'put', key: 'user:1', value: '{"name":"Ada"}' })
 * await wal.append({ type: 'del', key: 'user:1' })
 * ```
 */
export type Operation<K = Buffer, V = Buffer> =
  | {
      /** Store `value` under `key`. */
      type: 'put'
      /** The key. */
      key: Input<K>
      /** The value. */
      value: Input<V>
    }
  | {
      /** Delete `key`. */
      type: 'del'
      /** The key. */
      key: Input<K>
    }

/**
 * Options of {@link WriteAheadLog.open}. `KE` and `VE` are the key and value encodings,
 * inferred from `keyEncoding` and `valueEncoding`; they set the handle's types.
 *
 * @example
 * ```ts
 * const wal = await WriteAheadLog.open('./wal', { sync: 'always', segmentSize: 16 * 1024 * 1024, valueEncoding: 'json' })
 * ```
 */
export interface Options<KE extends Encoding = Encoding, VE extends Encoding = Encoding> {
  /** How keys are turned into bytes and back: 'buffer' (default), 'utf8', 'json' or a {@link Codec}. */
  keyEncoding?: KE
  /** How values are turned into bytes and back: 'buffer' (default), 'utf8', 'json' or a {@link Codec}. */
  valueEncoding?: VE
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
  /** Undefined when keys and values are both 'buffer'. */
  encodings: Encodings | undefined
}

const MIB = 1024 * 1024
const KNOWN = new Set(['sync', 'syncIntervalMs', 'segmentSize', 'preallocate', 'recovery', 'maxRecordSize', 'readOnly', 'backend', 'keyEncoding', 'valueEncoding'])

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
  if (dir instanceof URL) {
    if (dir.protocol !== 'file:') throw invalid(`open(dir): a URL dir must be a file: URL; got ${dir.protocol}.`)
  } else if (typeof dir !== 'string' || dir.length === 0) throw invalid('open(dir): dir must be a non-empty string path or a file: URL.')
  if (options === undefined || options === null) options = {}
  if (typeof options !== 'object') throw invalid('open(dir, options): options must be an object.')
  const o = options as Record<string, unknown>
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw invalid(`Unknown option '${k}'. Known options: ${[...KNOWN].join(', ')}.`)
  const key = resolveEncoding('keyEncoding', o.keyEncoding)
  const value = resolveEncoding('valueEncoding', o.valueEncoding)
  return {
    encodings: key || value ? { key, value } : undefined,
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
  /** Bytes of key + value, measured once (the engine's lengths). */
  size: number
}

/**
 * The bytes of one key or value. Strings become UTF-8. A Uint8Array is used as it is:
 * every length downstream is the engine's (lib/bytes.ts), and nothing but this thread can
 * resize it before it is encoded, in this same call (the writer refuses a record whose
 * encoded size differs from the measured one, should a worker grow a shared buffer).
 */
function bytes(v: unknown, what: string): Uint8Array {
  if (typeof v === 'string') return Buffer.from(v, 'utf8')
  if (!isUint8Array(v)) {
    const got = v === null ? 'null' : typeof v !== 'object' ? typeof v : ArrayBuffer.isView(v) ? v.constructor?.name ?? 'a typed array' : 'an object that is not a Uint8Array'
    throw invalid(`${what} must be a string or a Uint8Array (Buffer); got ${got}.`)
  }
  if (isDetached(v)) throw invalid(`${what} is a Uint8Array whose ArrayBuffer is detached (transferred); pass the bytes before transferring them.`)
  return v
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
  const size = byteLength(key) + (value ? byteLength(value) : 0)
  if (size > maxRecordSize)
    throw new WalError(
      'WAL_TOO_LARGE',
      `${where}: key + value is ${size} bytes, over maxRecordSize (${maxRecordSize}). Split the value or open with a larger maxRecordSize.`,
    )
  return { type, key, value, size }
}

/** A codec's output: a Uint8Array is copied, since a codec may reuse its buffer for the next call. */
function encodeField(t: Transcoder, v: unknown, what: string): unknown {
  const out = encodeWith(t, v, what)
  if (!t.custom || typeof out === 'string') return out
  if (!isUint8Array(out) || isDetached(out))
    throw invalid(`${what}: ${t.name} returned ${out === null ? 'null' : isUint8Array(out) ? 'a detached Uint8Array' : typeof out} from encode; it must return a string or a Uint8Array. Nothing was written.`)
  return Buffer.from(out)
}

/** Runs the handle's encodings over fields already read: user code runs here, before any bytes are taken. */
function encodeOp(raw: RawOp, enc: Encodings, where: string): void {
  if (raw.type !== 'put' && raw.type !== 'del') return // checkOp says what is wrong
  if (enc.key) raw.key = encodeField(enc.key, raw.key, `${where}: key`)
  if (enc.value && raw.type === 'put') raw.value = encodeField(enc.value, raw.value, `${where}: value`)
}

/** Validates one operation; `where` names it in messages ("appendBatch: operation 3"). */
export function normalizeOp(op: unknown, maxRecordSize: number, where: string, enc?: Encodings): EncodedOp {
  const raw = readOp(op, where)
  if (enc) encodeOp(raw, enc, where)
  return checkOp(raw, maxRecordSize, where)
}

/**
 * Validates a batch. Every operation's fields are read first, then all are checked and
 * their bytes taken: a getter of a later operation cannot resize, detach or rewrite the
 * bytes of an earlier one after they were measured.
 */
export function normalizeBatch(ops: unknown, maxRecordSize: number, enc?: Encodings): EncodedOp[] {
  if (!Array.isArray(ops)) throw invalid('appendBatch(ops): ops must be an array of operations.')
  const n = ops.length
  if (n === 0) throw invalid('appendBatch(ops): a batch needs at least one operation.')
  const raw: RawOp[] = new Array(n)
  for (let i = 0; i < n; i++) raw[i] = readOp(ops[i], `appendBatch: operation ${i}`)
  if (enc) for (let i = 0; i < n; i++) encodeOp(raw[i], enc, `appendBatch: operation ${i}`)
  const out: EncodedOp[] = new Array(n)
  for (let i = 0; i < n; i++) out[i] = checkOp(raw[i], maxRecordSize, `appendBatch: operation ${i}`)
  return out
}
