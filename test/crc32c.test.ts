import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { crc32c, WalError } from '../lib/index.js'
import { crc32cJs } from '../lib/crc32c.js'
import { loadAddon } from '../lib/native-addon.js'
import { prng, randomBytes } from './helpers/util.js'

const addon = loadAddon().addon!

// RFC 3720 (iSCSI) B.4 test vectors and the common check value.
const vectors: [string, Buffer, number][] = [
  ['"123456789"', Buffer.from('123456789'), 0xe3069283],
  ['32 bytes of zeros', Buffer.alloc(32, 0), 0x8a9136aa],
  ['32 bytes of 0xff', Buffer.alloc(32, 0xff), 0x62a8ab43],
  ['32 incrementing bytes', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e],
  ['32 decrementing bytes', Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c],
  ['empty', Buffer.alloc(0), 0],
]

for (const [name, data, want] of vectors) {
  test(`crc32c vector ${name}: public, native and js agree`, () => {
    assert.is(crc32c(data), want)
    assert.is(addon.crc32c(data), want)
    assert.is(crc32cJs(data), want)
  })
}

test('native hardware path matches the js table on random inputs of every length class', () => {
  const rand = prng(7)
  // Lengths straddle the 3-stream block (3 x 4096) and unaligned starts.
  const lengths = [1, 3, 7, 8, 9, 63, 100, 4095, 12287, 12288, 12289, 40000, 262144 + 5]
  for (const len of lengths) {
    for (const offset of [0, 1, 3, 7]) {
      const buf = randomBytes(rand, len + offset).subarray(offset)
      const seed = rand() >>> 0
      assert.is(addon.crc32c(buf, seed), crc32cJs(buf, seed), `len ${len} offset ${offset}`)
    }
  }
})

test('crc32c(b, crc32c(a)) === crc32c(a ++ b)', () => {
  const rand = prng(11)
  for (let i = 0; i < 50; i++) {
    const a = randomBytes(rand, rand() % 5000)
    const b = randomBytes(rand, rand() % 5000)
    const whole = crc32c(Buffer.concat([a, b]))
    assert.is(crc32c(b, crc32c(a)), whole)
    assert.is(crc32cJs(b, crc32cJs(a)), whole)
  }
})

test('crc32c rejects non-bytes and bad seeds with WAL_INVALID', () => {
  for (const bad of [() => crc32c('abc' as unknown as Uint8Array), () => crc32c(Buffer.from('a'), -1), () => crc32c(Buffer.from('a'), 2 ** 32)]) {
    try {
      bad()
      assert.unreachable('should throw')
    } catch (err) {
      assert.instance(err, WalError)
      assert.is((err as WalError).code, 'WAL_INVALID')
    }
  }
})

test('native binding refuses malformed arguments instead of crashing', () => {
  assert.throws(() => addon.crc32c('x' as unknown as Uint8Array))
  assert.throws(() => addon.encodeRecord(Buffer.alloc(10), 0, 1, 1, 0, Buffer.from('k'), Buffer.from('v')), /too small/)
  assert.throws(() => addon.encodeRecord(Buffer.alloc(100), 0, 9, 1, 0, Buffer.from('k'), undefined), /type/)
  assert.throws(() => addon.scan(Buffer.alloc(10), 5, 20), /outside/)
  assert.throws(() => addon.writeBlocking(-1 as number, Buffer.alloc(1), 0, 1, 0))
})

test.run()
