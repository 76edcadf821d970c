// The log writer (lib/log-writer.ts): LSNs are assigned when a call is made, so LSN order is
// call order across asynchronous and blocking appends; a record or batch that would not fit
// in the current segment goes to a new one, so a batch never spans segments and a finished
// segment stays within segmentSize.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, type Entry } from '../lib/index.js'
import { BACKENDS, segmentFiles, tmpDir } from './helpers/util.js'
import { collect } from './helpers/wal.js'

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void> | void) => test(`[${backend}] ${name}`, fn)

  t('concurrent appends get strictly increasing LSNs in call order, mixed with sync calls', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend })
    const promises: Promise<unknown>[] = []
    const expected: number[] = []
    let syncLsns: number[] = []
    for (let i = 0; i < 300; i++) {
      if (i % 50 === 25) {
        const lsn = wal.appendSync({ type: 'put', key: `s${i}`, value: 'x' })
        syncLsns.push(lsn)
        expected.push(lsn)
        continue
      }
      if (i % 7 === 0) promises.push(wal.appendBatch([{ type: 'put', key: `b${i}`, value: 'x' }, { type: 'del', key: `b${i}` }]))
      else promises.push(wal.append({ type: 'put', key: `k${i}`, value: String(i) }))
    }
    const results = await Promise.all(promises)
    const flat: number[] = []
    for (const r of results) flat.push(typeof r === 'number' ? r : (r as { first: number }).first)
    for (let i = 1; i < flat.length; i++) assert.ok(flat[i] > flat[i - 1], 'async LSNs increase in call order')
    assert.is(wal.durableLsn, wal.lastLsn)
    const keys = (await collect(wal.replay({ from: 0 }))).map((e) => e.key.toString())
    // Replay order is call order: reconstruct it.
    const want: string[] = []
    for (let i = 0; i < 300; i++) {
      if (i % 50 === 25) want.push(`s${i}`)
      else if (i % 7 === 0) want.push(`b${i}`, `b${i}`)
      else want.push(`k${i}`)
    }
    assert.equal(keys, want)
    syncLsns = []
    await wal.close()
  })

  t('segments rotate at segmentSize, a batch never spans segments, replay crosses segments', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize: 4096, preallocate: false })
    const value = 'v'.repeat(200)
    for (let i = 0; i < 40; i++) {
      if (i % 5 === 0) await wal.appendBatch(Array.from({ length: 6 }, (_, j) => ({ type: 'put' as const, key: `b${i}-${j}`, value })))
      else await wal.append({ type: 'put', key: `k${i}`, value })
    }
    const segs = segmentFiles(dir)
    assert.ok(segs.length >= 4, `rotated into ${segs.length} segments`)
    for (const s of segs.slice(0, -1)) assert.ok(fs.statSync(join(dir, s)).size <= 4096, `${s} within segmentSize`)
    const batches = []
    for await (const b of wal.replayBatches({ from: 0 })) batches.push(b)
    assert.is(batches.reduce((n, b) => n + b.entries.length, 0), 32 + 8 * 6)
    assert.ok(batches.filter((b) => b.entries.length === 6).length === 8)
    // A batch larger than a whole segment still goes in one (oversized) segment.
    const huge = await wal.appendBatch(Array.from({ length: 30 }, (_, j) => ({ type: 'put' as const, key: `h${j}`, value })))
    const got = (await collect(wal.replay({ from: huge.first }))).map((e) => e.lsn)
    assert.equal(got, Array.from({ length: 30 }, (_, j) => huge.first + j))
    await wal.close()
    const r = await WriteAheadLog.open(dir, { backend, segmentSize: 4096, preallocate: false })
    assert.is((await collect(r.replay({ from: 0 }))).length, 32 + 8 * 6 + 30)
    await r.close()
  })
}

test.run()
