// Key and value encodings: what turns a caller's keys and values into the bytes of a record
// and back. The on-disk bytes are whatever the encoding produced; the log never records
// which encoding wrote them, so open with the one that did.
import { isUint8Array } from './bytes.js'
import { WalError } from './errors.js'
import type { Bytes } from './options.js'

/**
 * A custom encoding, as abstract-level takes one: `encode` turns a value into bytes (a
 * string is stored as UTF-8), `decode` turns the stored bytes back into the value.
 *
 * @example
 * ```ts
 * const dates: Codec<Date> = {
 *   encode: (d) => d.toISOString(),
 *   decode: (b) => new Date(b.toString('utf8')),
 * }
 * const wal = await WriteAheadLog.open('./events-wal', { valueEncoding: dates })
 * ```
 */
export interface Codec<T> {
  /** The bytes to store for `value` (a string is stored as UTF-8); may throw to refuse it. */
  encode(value: T): Uint8Array | string
  /** `bytes` is a view into a read buffer: copy it if you keep it past the entry. */
  decode(bytes: Buffer): T
}

/**
 * `'buffer'` (default): keys or values are strings (stored as UTF-8) or Uint8Arrays going
 * in, Buffers coming out. `'utf8'`: strings both ways. `'json'`: any JSON-serializable
 * value, stored as its UTF-8 JSON text. Or a {@link Codec}.
 *
 * @example
 * ```ts
 * const wal = await WriteAheadLog.open('./wal', { keyEncoding: 'utf8', valueEncoding: 'json' })
 * ```
 */
export type Encoding<T = any> = 'buffer' | 'utf8' | 'json' | Codec<T>

/**
 * What replay and follow yield for a key or value of encoding `E`.
 *
 * @example
 * ```ts
 * type K = Decoded<'utf8'> // string
 * ```
 */
export type Decoded<E> = E extends Codec<infer T> ? T : E extends 'utf8' ? string : E extends 'json' ? any : Buffer

/**
 * What append takes for a key or value that replay yields as `T`: `'buffer'` takes strings too.
 *
 * @example
 * ```ts
 * type In = Input<Buffer> // string | Uint8Array
 * ```
 */
export type Input<T> = 0 extends 1 & T ? any : [T] extends [Buffer] ? Bytes : T

/** An encoding resolved at open; `undefined` means 'buffer', which costs nothing. */
export interface Transcoder {
  name: string
  /** A user's codec (its output buffers are copied), not a built-in one. */
  custom: boolean
  encode(v: unknown): unknown
  decode(b: Buffer): unknown
}

const utf8: Transcoder = {
  name: "'utf8'",
  custom: false,
  encode(v) {
    if (typeof v !== 'string') throw new TypeError(`expected a string; got ${describe(v)}`)
    return v
  },
  decode: (b) => b.toString('utf8'),
}

const json: Transcoder = {
  name: "'json'",
  custom: false,
  encode(v) {
    const text = JSON.stringify(v)
    if (text === undefined) throw new TypeError(`${describe(v)} has no JSON form`)
    return text
  },
  decode: (b) => JSON.parse(b.toString('utf8')),
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (isUint8Array(v)) return 'a Uint8Array'
  if (typeof v === 'object') return `an object (${(v as object).constructor?.name ?? 'null prototype'})`
  return typeof v
}

/** Checks an encoding option at open. */
export function resolveEncoding(option: string, v: unknown): Transcoder | undefined {
  if (v === undefined || v === 'buffer') return undefined
  if (v === 'utf8') return utf8
  if (v === 'json') return json
  if (v !== null && typeof v === 'object') {
    const { encode, decode } = v as { encode?: unknown; decode?: unknown }
    if (typeof encode === 'function' && typeof decode === 'function')
      return { name: `the ${option} codec`, custom: true, encode: (x) => encode.call(v, x), decode: (b) => decode.call(v, b) }
  }
  throw new WalError('WAL_INVALID', `Option '${option}' must be 'buffer', 'utf8', 'json' or an object with encode(value) and decode(bytes) functions; got ${typeof v === 'string' ? JSON.stringify(v) : describe(v)}.`)
}

/** Runs `t.encode`; any failure is WAL_INVALID naming the operation, before anything is staged. */
export function encodeWith(t: Transcoder, v: unknown, what: string): unknown {
  try {
    return t.encode(v)
  } catch (err) {
    throw new WalError('WAL_INVALID', `${what}: ${t.name} could not encode it: ${(err as Error)?.message ?? String(err)}. Nothing was written.`, { cause: err })
  }
}

/** Runs `t.decode` on a stored key or value; a failure names the LSN (the bytes on disk are intact). */
export function decodeWith(t: Transcoder, b: Buffer, lsn: number, what: 'key' | 'value'): unknown {
  try {
    return t.decode(b)
  } catch (err) {
    throw new WalError(
      'WAL_INVALID',
      `The ${what} of LSN ${lsn} could not be decoded by ${t.name}: ${(err as Error)?.message ?? String(err)}. The log is intact; open it with the encoding that wrote it (or 'buffer' to see the bytes).`,
      { cause: err },
    )
  }
}

/** The key and value transcoders of a handle; undefined when both are 'buffer'. */
export interface Encodings {
  key: Transcoder | undefined
  value: Transcoder | undefined
}

interface MutableEntry {
  lsn: number
  type: 'put' | 'del'
  key: unknown
  value: unknown
}

/** Decodes an entry in place (entries are fresh objects per read). */
export function decodeEntry(enc: Encodings, e: MutableEntry): void {
  if (enc.key) e.key = decodeWith(enc.key, e.key as Buffer, e.lsn, 'key')
  if (enc.value && e.type === 'put') e.value = decodeWith(enc.value, e.value as Buffer, e.lsn, 'value')
}
