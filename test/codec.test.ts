// The two encoders and scanners must agree byte for byte: that is what lets each backend
// read what the other wrote. Above them the backends share every line of code, so for the
// same sequence of calls they write byte-identical files, and each reads the other's.
import * as fs from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../lib/index.js'
import type { Operation } from '../lib/options.js'
import {
  IX_STRIDE,
  RECORD_HEADER_SIZE,
  SCAN_BAD,
  SCAN_END,
  SCAN_NEED_MORE,
  SCAN_ZERO,
  TYPE_DEL,
  TYPE_PUT,
} from '../lib/format.js'
import { unitArb } from './helpers/arbitraries.js'
import { BACKENDS, backendImpl, prng, randomBytes, segmentFiles, tmpDir, type BackendName } from './helpers/util.js'
import { plainUnit, replayAll, type PlainBatch } from './guarantees/crash/common.js'

const native = backendImpl('native')
const js = backendImpl('js')

function randomOps(rand: () => number, n: number) {
  const types = new Uint8Array(n)
  const keys: Uint8Array[] = []
  const values: (Uint8Array | undefined)[] = []
  for (let i = 0; i < n; i++) {
    types[i] = rand() % 3 === 0 ? TYPE_DEL : TYPE_PUT
    keys.push(randomBytes(rand, rand() % 40))
    values.push(types[i] === TYPE_PUT ? randomBytes(rand, rand() % 300) : undefined)
  }
  return { types, keys, values }
}

test('native and js encoders produce identical bytes for records, batches and checkpoints', () => {
  const rand = prng(1)
  for (let round = 0; round < 200; round++) {
    const { types, keys, values } = randomOps(rand, 1 + (rand() % 8))
    const a = Buffer.alloc(64 * 1024)
    const b = Buffer.alloc(64 * 1024)
    const lsn = 1 + (rand() % 1_000_000)
    const mark = rand() % lsn
    let pa = native.encodeRecord(a, 0, types[0], lsn, mark, keys[0], values[0])
    let pb = js.encodeRecord(b, 0, types[0], lsn, mark, keys[0], values[0])
    assert.is(pa, pb)
    pa = native.encodeBatch(a, pa, types, keys, values, lsn + 1, mark)
    pb = js.encodeBatch(b, pb, types, keys, values, lsn + 1, mark)
    assert.is(pa, pb)
    pa = native.encodeCheckpoint(a, pa, lsn + types.length, mark, lsn)
    pb = js.encodeCheckpoint(b, pb, lsn + types.length, mark, lsn)
    assert.is(pa, pb)
    assert.ok(a.subarray(0, pa).equals(b.subarray(0, pb)), `round ${round}`)
  }
})

test('large LSNs near 2^53 encode identically and scan back exactly', () => {
  const lsn = Number.MAX_SAFE_INTEGER - 5
  const a = Buffer.alloc(200)
  const b = Buffer.alloc(200)
  const end = native.encodeRecord(a, 0, TYPE_PUT, lsn, lsn - 1, Buffer.from('k'), Buffer.from('v'))
  js.encodeRecord(b, 0, TYPE_PUT, lsn, lsn - 1, Buffer.from('k'), Buffer.from('v'))
  assert.ok(a.equals(b))
  for (const be of [native, js]) {
    const r = be.scan(a, 0, end)
    assert.is(r.status, SCAN_END)
    assert.is(r.index[4], lsn)
    assert.is(r.index[5], lsn - 1)
  }
})

test('scanners agree on every prefix and every single-byte corruption of a run of records', () => {
  const rand = prng(2)
  const { types, keys, values } = randomOps(rand, 5)
  const buf = Buffer.alloc(8192)
  let end = native.encodeRecord(buf, 0, TYPE_PUT, 1, 0, Buffer.from('alpha'), Buffer.from('one'))
  end = native.encodeBatch(buf, end, types, keys, values, 2, 1)
  end = native.encodeRecord(buf, end, TYPE_DEL, 7, 6, Buffer.from('alpha'), undefined)
  const same = (x: Uint8Array, s: number, e: number) => {
    const r1 = native.scan(x, s, e)
    const r2 = js.scan(x, s, e)
    assert.is(r1.status, r2.status)
    assert.is(r1.stop, r2.stop)
    assert.is(r1.need, r2.need)
    assert.equal(Array.from(r1.index), Array.from(r2.index))
    return r1
  }
  const whole = same(buf, 0, end)
  assert.is(whole.status, SCAN_END)
  assert.is(whole.index.length / IX_STRIDE, 1 + 1 + 5 + 1 + 1)
  for (let cut = 0; cut < end; cut++) {
    const r = same(buf, 0, cut)
    assert.ok(r.status === SCAN_END || r.status === SCAN_NEED_MORE, `cut ${cut}`)
  }
  for (let i = 0; i < end; i++) {
    const copy = Buffer.from(buf.subarray(0, end))
    copy[i] ^= 1 << (rand() % 8)
    const r = same(copy, 0, end)
    // A flipped byte is never accepted: scanning stops at or before the damaged record.
    assert.ok(r.status !== SCAN_END, `flip at ${i} went unnoticed`)
    assert.ok(r.stop <= i, `flip at ${i}: scan went past it to ${r.stop}`)
  }
})

test('zero bytes never parse as a record; garbage is BAD; resync finds the next record', () => {
  for (const be of [native, js]) {
    const zeros = Buffer.alloc(4096)
    assert.is(be.scan(zeros, 0, zeros.length).status, SCAN_ZERO)
    assert.is(be.scan(zeros, 0, 10).status, SCAN_ZERO)
    const garbage = randomBytes(prng(3), 4096)
    assert.is(be.scan(garbage, 0, garbage.length).status, SCAN_BAD)
    const buf = Buffer.concat([garbage.subarray(0, 777), Buffer.alloc(100)])
    const end = be.encodeRecord(buf, 777 - 77, TYPE_PUT, 5, 4, Buffer.from('k'), Buffer.from('value'))
    assert.is(be.findNextRecord(buf, 0, end), 700)
    assert.is(be.findNextRecord(buf, 701, end), end)
    assert.is(end - 700, RECORD_HEADER_SIZE + 6)
  }
})

const RUNS = Number(process.env.FASTWAL_PROPERTY_RUNS ?? 30)

type Cmd =
  | { c: 'unit'; kind: 'one' | 'batch'; ops: Operation[]; sync: boolean }
  | { c: 'sync' }
  | { c: 'checkpoint'; frac: number }
  | { c: 'reopen' }

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 12, arbitrary: fc.tuple(unitArb, fc.boolean()).map(([u, sync]) => ({ c: 'unit' as const, ...u, sync })) },
  { weight: 1, arbitrary: fc.constant({ c: 'sync' as const }) },
  { weight: 2, arbitrary: fc.oneof(fc.constant(1), fc.double({ min: 0, max: 1, noNaN: true })).map((frac) => ({ c: 'checkpoint' as const, frac })) },
  { weight: 1, arbitrary: fc.constant({ c: 'reopen' as const }) },
)

async function runCommands(dir: string, backend: BackendName, opts: { preallocate: boolean; segmentSize: number }, cmds: Cmd[]): Promise<PlainBatch[]> {
  const options = { backend, ...opts }
  let wal = await WriteAheadLog.open(dir, options)
  const model: PlainBatch[] = []
  for (const cmd of cmds) {
    if (cmd.c === 'unit') {
      let first: number
      let last: number
      if (cmd.kind === 'one') first = last = cmd.sync ? wal.appendSync(cmd.ops[0]) : await wal.append(cmd.ops[0])
      else ({ first, last } = cmd.sync ? wal.appendBatchSync(cmd.ops) : await wal.appendBatch(cmd.ops))
      model.push(plainUnit({ first, last, ops: cmd.ops }))
    } else if (cmd.c === 'sync') {
      await wal.sync()
    } else if (cmd.c === 'checkpoint') {
      await wal.checkpoint(Math.floor(cmd.frac * wal.lastLsn))
    } else {
      await wal.close()
      wal = await WriteAheadLog.open(dir, options)
    }
  }
  await wal.close()
  return model
}

test('native-written and js-written files are byte-identical for the same sequence of calls, and each backend reads the other’s', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(cmdArb, { minLength: 1, maxLength: 60, size: 'max' }),
      fc.boolean(),
      fc.constantFrom(4096, 8192),
      async (cmds, preallocate, segmentSize) => {
        const dirs = { native: tmpDir('ident-native'), js: tmpDir('ident-js') }
        try {
          const models: Record<string, PlainBatch[]> = {}
          for (const b of BACKENDS) models[b] = await runCommands(dirs[b], b, { preallocate, segmentSize }, cmds)
          assert.equal(models.native, models.js, 'same LSNs from both backends')
          const names = segmentFiles(dirs.native)
          assert.equal(segmentFiles(dirs.js), names, 'same segment files')
          for (const n of names) {
            const a = fs.readFileSync(join(dirs.native, n))
            const b = fs.readFileSync(join(dirs.js, n))
            if (!a.equals(b)) {
              let i = 0
              while (i < a.length && a[i] === b[i]) i++
              assert.unreachable(`${n} differs at byte ${i} (sizes ${a.length}, ${b.length})`)
            }
          }
          // Cross-read: each backend replays the other's files as the model's retained units.
          const firstKept = Number(names[0].slice(0, 20))
          const want = models.native.filter((u) => u.first >= firstKept)
          for (const b of BACKENDS) {
            const reader = await WriteAheadLog.open(dirs[b], { backend: b === 'native' ? 'js' : 'native', readOnly: true })
            assert.equal(await replayAll(reader), want, `${b}-written files read by the other backend`)
            await reader.close()
          }
        } finally {
          for (const d of Object.values(dirs)) fs.rmSync(d, { recursive: true, force: true })
        }
      },
    ),
    { numRuns: RUNS, endOnFailure: process.env.FASTWAL_PROPERTY_NO_SHRINK === '1' },
  )
})

test.run()
