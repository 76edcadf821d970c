// lib/stats.ts: the latency histogram behind stats().syncLatencyUs, and the diagnostics
// channels APM tools subscribe to (fastwal:sync, fastwal:rotate, fastwal:checkpoint,
// fastwal:recovery).
import diagnostics_channel from 'node:diagnostics_channel'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../lib/index.js'
import { LatencyHistogram } from '../lib/stats.js'
import { BACKENDS, segmentFiles, tmpDir } from './helpers/util.js'

test('the histogram reports percentiles within its bucket resolution, and the exact max', () => {
  const h = new LatencyHistogram()
  assert.equal([h.percentile(50), h.percentile(99), h.max], [0, 0, 0])
  for (let i = 1; i <= 1000; i++) h.record(i)
  const p50 = h.percentile(50)
  const p99 = h.percentile(99)
  assert.ok(p50 >= 500 && p50 <= 500 * 1.2, `p50 ${p50}`)
  assert.ok(p99 >= 990 && p99 <= 1000, `p99 ${p99}`)
  assert.is(h.max, 1000)
})

function listen(name: string): { events: Record<string, unknown>[]; stop: () => void } {
  const events: Record<string, unknown>[] = []
  const fn = (m: unknown) => events.push(m as Record<string, unknown>)
  diagnostics_channel.subscribe(name, fn)
  return { events, stop: () => diagnostics_channel.unsubscribe(name, fn) }
}

for (const backend of BACKENDS) {
  test(`[${backend}] sync, rotate, checkpoint and recovery events are published on diagnostics channels`, async () => {
    const dir = tmpDir()
    const sync = listen('fastwal:sync')
    const rotate = listen('fastwal:rotate')
    const checkpoint = listen('fastwal:checkpoint')
    const recovery = listen('fastwal:recovery')
    try {
      const wal = await WriteAheadLog.open(dir, { backend, segmentSize: 4096, preallocate: false })
      await Promise.all(Array.from({ length: 20 }, (_, i) => wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(300) })))
      const mine = sync.events.filter((e) => e.dir === dir)
      assert.ok(mine.length >= 1)
      assert.ok(mine.some((e) => (e.groupSize as number) > 1), 'concurrent appends are committed in groups')
      assert.ok(mine.every((e) => typeof e.latencyUs === 'number' && (e.latencyUs as number) >= 0))
      assert.is(Math.max(...mine.map((e) => e.durableLsn as number)), 20)
      assert.ok(rotate.events.filter((e) => e.dir === dir).length >= 1)
      await wal.checkpoint(wal.lastLsn)
      const cp = checkpoint.events.filter((e) => e.dir === dir)
      assert.is(cp.length, 1)
      assert.is(cp[0].lsn, 20)
      assert.ok((cp[0].deletedSegments as number) >= 1)
      await wal.append({ type: 'put', key: 'last', value: 'x'.repeat(100) })
      await wal.close()
      // A torn tail: the last record cut in half.
      const last = join(dir, segmentFiles(dir).pop()!)
      fs.truncateSync(last, fs.statSync(last).size - 50)
      const again = await WriteAheadLog.open(dir, { backend, segmentSize: 4096, preallocate: false })
      const rec = recovery.events.filter((e) => e.dir === dir)
      assert.is(rec.length, 1)
      assert.is(rec[0].mode, 'tolerate-tail')
      assert.is(rec[0].droppedEntries, again.recovery.droppedEntries)
      assert.ok((rec[0].truncatedBytes as number) > 0)
      await again.close()
    } finally {
      for (const l of [sync, rotate, checkpoint, recovery]) l.stop()
    }
  })
}

test.run()
