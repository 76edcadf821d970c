// Event-loop delay while async appends rotate through many small segments: the largest
// stall the log's own work puts on the event loop (segment creation, truncation, syncs).
//
//   node bench/loop-delay.mjs [package dir] [backend]     (defaults: this package, native)
//
// Prints one JSON line: rotations, appends/s, and the event-loop delay p50/p99/max (ms),
// measured with perf_hooks.monitorEventLoopDelay at 1 ms resolution. Compare two builds
// (e.g. before and after a change) by passing each one's directory.
import * as fs from 'node:fs'
import { createRequire } from 'node:module'
import * as os from 'node:os'
import { join, resolve } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

const pkg = resolve(process.argv[2] ?? join(fileURLToPath(import.meta.url), '..', '..'))
const backend = process.argv[3] ?? 'native'
const { WriteAheadLog } = createRequire(import.meta.url)(join(pkg, 'dist', 'cjs', 'index.js'))

const SEGMENT = Number(process.env.SEGMENT ?? 64 * 1024)
const VALUE = Buffer.alloc(1000, 7)
const TOTAL = 20_000 // about 300 rotations
const dir = fs.mkdtempSync(join(os.tmpdir(), 'fastwal-loop-delay-'))
try {
  const wal = await WriteAheadLog.open(join(dir, 'wal'), { backend, segmentSize: SEGMENT })
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  const t0 = process.hrtime.bigint()
  const inflight = []
  for (let i = 0; i < TOTAL; i++) {
    inflight.push(wal.append({ type: 'put', key: `k${i}`, value: VALUE }))
    if (inflight.length >= 64) await Promise.all(inflight.splice(0))
  }
  await Promise.all(inflight)
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  h.disable()
  const rotations = fs.readdirSync(join(dir, 'wal')).filter((n) => n.endsWith('.wal')).length - 1
  await wal.close()
  const ms = (ns) => Math.round(ns / 1e4) / 100
  console.log(JSON.stringify({ pkg, backend, rotations, appendsPerSec: Math.round(TOTAL / secs), loopDelayMs: { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) } }))
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
