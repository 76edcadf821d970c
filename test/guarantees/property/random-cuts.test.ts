// Property test (fast-check): after random operation sequences and a random cut of the last
// segment, a default open replays exactly the whole committed units (standalone appends and
// batches) that end before the cut, and appends continue above every kept LSN.
import * as fs from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../../../lib/index.js'
import { unitArb } from '../../helpers/arbitraries.js'
import { BACKENDS, segmentFiles, tmpDir } from '../../helpers/util.js'
import { HEADER, plainUnit, replayAll, writeUnits, type PlainBatch } from '../crash/common.js'

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

test.run()
