// Deterministic pseudo-random bytes (xorshift32), so failures reproduce. No side effects
// on import: child fixtures that may be SIGKILLed use it too.

export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
}

export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = rand() & 0xff
  return b
}
