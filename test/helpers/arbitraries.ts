// fast-check arbitraries for operations and units of commitment (a standalone append or a
// batch), shared by the property tests.
import fc from 'fast-check'
import type { Operation } from '../../lib/options.js'

// size: 'max' throughout: fast-check's default "small" sizes would rarely fill a segment.
const bytes = (max: number) =>
  fc.oneof(
    fc.string({ maxLength: max, size: 'max' }),
    fc.string({ unit: 'binary', maxLength: Math.min(max, 12), size: 'max' }), // any code point, lone surrogates included
    fc.uint8Array({ maxLength: max, size: 'max' }).map((u) => (u.length % 2 ? Buffer.from(u) : u)),
    fc.constant(''),
  )

const opArb: fc.Arbitrary<Operation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant('put' as const), key: bytes(16), value: bytes(300) }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('del' as const), key: bytes(16) }) },
)

export const unitArb = fc.oneof(
  fc.record({ kind: fc.constant('one' as const), ops: opArb.map((o) => [o]) }),
  fc.record({ kind: fc.constant('batch' as const), ops: fc.array(opArb, { minLength: 1, maxLength: 6, size: 'max' }) }),
)
