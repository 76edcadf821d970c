// Public option and operation types, and their validation. Everything a caller passes is
// checked here, before any byte is encoded or any file is touched.
import { WalError } from './errors.js'
import { MAX_PAYLOAD, RECORD_HEADER_SIZE, TYPE_DEL, TYPE_PUT } from './format.js'

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

function bytes(v: unknown, what: string): Uint8Array {
  if (typeof v === 'string') return Buffer.from(v, 'utf8')
  if (v instanceof Uint8Array) return v
  throw invalid(`${what} must be a string or a Uint8Array (Buffer); got ${v === null ? 'null' : typeof v}.`)
}

/** Validates one operation; `where` names it in messages ("operation 3 of the batch"). */
export function normalizeOp(op: unknown, maxRecordSize: number, where: string): EncodedOp {
  if (op === null || typeof op !== 'object') throw invalid(`${where} must be an object like { type: 'put', key, value }.`)
  const o = op as Record<string, unknown>
  let type: number
  let value: Uint8Array | undefined
  const key = bytes(o.key, `${where}: key`)
  if (o.type === 'put') {
    type = TYPE_PUT
    value = bytes(o.value, `${where}: value`)
  } else if (o.type === 'del') {
    type = TYPE_DEL
    value = undefined
  } else {
    throw invalid(`${where}: type must be 'put' or 'del'; got ${JSON.stringify(o.type)}.`)
  }
  const size = key.length + (value ? value.length : 0)
  if (size > maxRecordSize)
    throw new WalError(
      'WAL_TOO_LARGE',
      `${where}: key + value is ${size} bytes, over maxRecordSize (${maxRecordSize}). Split the value or open with a larger maxRecordSize.`,
    )
  return { type, key, value }
}

export function encodedSize(op: EncodedOp): number {
  return RECORD_HEADER_SIZE + op.key.length + (op.value ? op.value.length : 0)
}
