// The engine's own view of a Uint8Array. The built-in getters, called directly rather
// than through the object, read internal slots: a subclass or an own property that lies
// about `length`, or a Proxy, cannot make the bytes measured differ from the bytes copied
// (TypedArray.prototype.set and the native encoder use the internal length too).
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object
const getter = (proto: object, name: PropertyKey) => Object.getOwnPropertyDescriptor(proto, name)!.get as (this: unknown) => unknown
const tagOf = getter(TypedArrayPrototype, Symbol.toStringTag)
const lengthOf = getter(TypedArrayPrototype, 'length')
const bufferOf = getter(TypedArrayPrototype, 'buffer')

/** True for a Uint8Array (or Buffer) of any realm; false for Proxies, other views and non-objects. */
export function isUint8Array(v: unknown): v is Uint8Array {
  return Reflect.apply(tagOf, v, []) === 'Uint8Array'
}

/** The real byte length of a Uint8Array (0 once its buffer is detached). */
export function byteLength(v: Uint8Array): number {
  return Reflect.apply(lengthOf, v, []) as number
}

/** Whether the buffer under a Uint8Array was transferred away (a zero-length view tells nothing more). */
export function isDetached(v: Uint8Array): boolean {
  if (byteLength(v) !== 0) return false
  const buf = Reflect.apply(bufferOf, v, []) as ArrayBufferLike
  try {
    new Uint8Array(buf, 0, 0)
    return false
  } catch {
    return true // constructing a view of a detached ArrayBuffer throws
  }
}

const ZEROS = new Uint8Array(64 * 1024)

/** Index of the first non-zero byte of b, or b.length. Compares 64 KiB at a time. */
export function firstNonZero(b: Uint8Array): number {
  for (let at = 0; at < b.length; at += ZEROS.length) {
    const part = b.subarray(at, Math.min(b.length, at + ZEROS.length))
    if (Buffer.compare(part, ZEROS.subarray(0, part.length)) !== 0) {
      for (let i = 0; i < part.length; i++) if (part[i] !== 0) return at + i
    }
  }
  return b.length
}
