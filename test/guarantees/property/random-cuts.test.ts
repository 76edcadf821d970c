// Property tests (fast-check): random operation sequences and a random cut of the last
// segment replay as the model's prefix of whole committed units; and both backends write
// byte-identical files for the same sequence of calls.
import * as fs from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../../lib/index.js'
import type { Operation } from '../../lib/options.js'
import { BACKENDS, segmentFiles, tmpDir, type BackendName } from '../helpers/util.js'
import { HEADER, plainUnit, replayAll, writeUnits, type PlainBatch } from './common.js'

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

const unitArb = fc.oneof(
  fc.record({ kind: fc.constant('one' as const), ops: opArb.map((o) => [o]) }),
  fc.record({ kind: fc.constant('batch' as const), ops: fc.array(opArb, { minLength: 1, maxLength: 6, size: 'max' }) }),
)

const RUNS = Number(process.env.FASTWAL_PROPERTY_RUNS ?? 30)

for (const backend of BACKENDS) {
  test(`${backend}: random operations + a random cut of the last segment replay as the model's whole committed units before the cut`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(unitArb, fc.boolean()), { minLength: 1, maxLength: 40, size: 'max' }), fc.double({ min: 0, max: 1, noNaN: true }), async (seq, where) => {
        const dir = tmpDir(`prop-${backend}`)
        try {
          const wal = await WriteAheadLog.open(dir, { backend, preallocate: false, segmentSize: 4096 })
          const units = await writeUnits(wal, dir, seq.map(([u]) => u), { useSync: (i) => seq[i][1] })
          await wal.close()
          const segs = segmentFiles(dir)
          const lastSeg = segs[segs.length - 1]
          const path = join(dir, lastSeg)
          const full = fs.readFileSync(path)
          const cut = Math.min(full.length, Math.floor(where * (full.length + 1)))
          fs.truncateSync(path, cut)
          const want: PlainBatch[] = units.filter((u) => u.seg !== lastSeg || (cut >= HEADER && u.end <= cut)).map(plainUnit)

          const reopened = await WriteAheadLog.open(dir, { backend, preallocate: false, segmentSize: 4096 })
          const got = await replayAll(reopened)
          assert.equal(got, want, `cut ${cut} of ${full.length} in ${lastSeg}`)
          const keptLast = want.length ? want[want.length - 1].last : 0
          const lsn = await reopened.append({ type: 'put', key: 'after', value: '' })
          assert.ok(lsn > keptLast, 'appends continue above the kept LSNs')
          await reopened.close()
        } finally {
          fs.rmSync(dir, { recursive: true, force: true })
        }
      }),
      { numRuns: RUNS },
    )
  })
}

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
