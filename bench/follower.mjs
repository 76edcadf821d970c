// Workload F's follower in another process (bench/worker.mjs starts it): a readOnly handle
// that follows the writer with followBatches, notes when each batch of 100 is yielded
// (wall clock, comparable across processes), then sits idle while its CPU time is measured.
// Prints one JSON object.
import { performance } from 'node:perf_hooks'
import { WriteAheadLog } from '../dist/esm/index.mjs'

const { dir, backend, batches, idleMs } = JSON.parse(process.argv[2])
const BATCH = 100
const wallNow = () => performance.timeOrigin + performance.now()
const wal = await WriteAheadLog.open(dir, { backend, readOnly: true })
const yieldedAt = new Array(batches).fill(0)
let followed = 0
let first = 0
const it = wal.followBatches({ from: 1 })
const firstBatch = it.next()
process.send?.('ready')
for (let r = await firstBatch; !r.done; r = await it.next()) {
  const b = r.value
  const t = wallNow()
  if (followed === 0) first = t
  yieldedAt[(b.first - 1) / BATCH] = t
  if (++followed === batches) break
}
process.disconnect?.()
const entriesPerSec = (batches * BATCH) / ((wallNow() - first) / 1000 + 1e-9)
const idle = wal.follow({ from: wal.durableLsn + 1 })
const pending = idle.next()
await new Promise((r) => setTimeout(r, 500)) // let the run's deferred work (GC, compilation) finish
const c0 = process.cpuUsage()
const w0 = performance.now()
await new Promise((r) => setTimeout(r, idleMs))
const c = process.cpuUsage(c0)
const idleCpuPct = ((c.user + c.system) / 1000 / (performance.now() - w0)) * 100
await wal.close()
await pending
process.stdout.write(JSON.stringify({ yieldedAt, entriesPerSec, idleCpuPct }))
