// The ingestion service of `npm run bench:ingest`: a Fastify server that accepts JSON events
// on POST /events and replies 202 only once the event is durable in its store. Started by
// bench/ingest.mjs as its own process: node bench/ingest-server.mjs <store> <dir>
// Stores: fastwal-native, fastwal-js (sync 'always'), sqlite (better-sqlite3, WAL,
// synchronous=FULL: each insert commits and syncs), lmdb (put, then await `flushed`),
// none (no storage: the HTTP ceiling). GET /stats gives the server's own figures since the
// last POST /reset; it prints "listening <port>" once ready and closes its store on SIGTERM.
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import Fastify from 'fastify'

const require = createRequire(import.meta.url)
const [store, dir] = process.argv.slice(2)

let accept // (key, value) => Promise<void> | void, resolved once durable
let close = async () => {}
let storeStats = () => ({})
if (store === 'fastwal-native' || store === 'fastwal-js') {
  const { WriteAheadLog } = await import('../dist/esm/index.mjs')
  const wal = await WriteAheadLog.open(join(dir, 'wal'), { backend: store.slice(8), sync: 'always' })
  accept = (key, value) => wal.append({ type: 'put', key, value })
  close = () => wal.close()
  storeStats = () => {
    const st = wal.stats()
    return { syncs: st.syncs, perSync: st.groupCommit.mean, syncP50Us: st.syncLatencyUs.p50 }
  }
} else if (store === 'sqlite') {
  const Database = require('better-sqlite3')
  const db = new Database(join(dir, 'events.sqlite'))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.exec('CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, key TEXT, value TEXT)')
  const ins = db.prepare('INSERT INTO events (key, value) VALUES (?, ?)')
  accept = (key, value) => {
    ins.run(key, value)
  }
  close = async () => db.close()
} else if (store === 'lmdb') {
  const { open } = require('lmdb')
  const db = open({ path: join(dir, 'lmdb'), encoding: 'string' })
  accept = async (key, value) => {
    await db.put(key, value)
    await db.flushed
  }
  close = () => db.close()
} else if (store === 'none') {
  accept = () => {}
} else throw new Error(`unknown store ${store}`)

const eld = monitorEventLoopDelay({ resolution: 1 })
let since = { cpu: process.cpuUsage(), accepted: 0 }
let accepted = 0
let seq = 0

const app = Fastify({ logger: false })
app.post('/events', async (req, reply) => {
  const key = `${process.pid}:${++seq}`
  await accept(key, JSON.stringify(req.body))
  accepted++
  reply.code(202)
  return ''
})
app.post('/reset', async () => {
  eld.reset()
  eld.enable()
  since = { cpu: process.cpuUsage(), accepted }
  return { ok: true }
})
app.get('/stats', async () => {
  const cpu = process.cpuUsage(since.cpu)
  const n = accepted - since.accepted
  return {
    accepted,
    requests: n,
    cpuUsPerRequest: n > 0 ? (cpu.user + cpu.system) / n : 0,
    eldP99Ms: Math.max(0, eld.percentile(99) / 1e6 - 1),
    eldMaxMs: Math.max(0, eld.max / 1e6 - 1),
    rssMiB: process.memoryUsage.rss() / 2 ** 20,
    ...storeStats(),
  }
})
await app.listen({ host: '127.0.0.1', port: 0 })
process.stdout.write(`listening ${app.server.address().port}\n`)
process.on('SIGTERM', async () => {
  await app.close()
  await close()
  process.stdout.write(`closed ${accepted}\n`)
  process.exit(0)
})
