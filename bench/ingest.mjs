#!/usr/bin/env node
// `npm run bench:ingest`: the end-to-end workload a user runs. An HTTP ingestion service
// (bench/ingest-server.mjs, Fastify) replies 202 only once an event is durable; autocannon
// drives it with 64 and 256 connections. Per store and connection count: req/s, latency
// p50/p99, the server's event-loop delay and RSS, its CPU per request, and a count check
// (records on disk after the server closed = 202s sent). Every server is a fresh process
// with its own data directory on the bench's disk (see bench/README.md).
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const require = createRequire(import.meta.url)
const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '..')
const STORES = ['fastwal-native', 'fastwal-js', 'sqlite', 'lmdb', 'none']

const { values: o } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64,256' },
    only: { type: 'string', default: STORES.join(',') },
    dir: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (o.help) {
  console.log(`usage: npm run bench:ingest -- [--duration s] [--connections 64,256] [--only ${STORES.join(',')}] [--dir path] [--json file]`)
  process.exit(0)
}
const duration = Number(o.duration)
const conns = o.connections.split(',').map(Number)
const stores = o.only.split(',')
for (const s of stores) if (!STORES.includes(s)) throw new Error(`--only: unknown store ${s}`)
const autocannon = require('autocannon')
const base = o.dir ?? join(root, '.bench-data', `ingest-${process.pid}`)
fs.mkdirSync(base, { recursive: true })

const body = JSON.stringify({ type: 'page_view', user: 'u-12345', path: '/products/42', ts: 1764662400000, tags: ['a', 'b'] })

function startServer(store, dir) {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [join(here, 'ingest-server.mjs'), store, dir], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (d) => {
      out += d
      const m = /listening (\d+)/.exec(out)
      if (m && !p.port) {
        p.port = Number(m[1])
        res(p)
      }
    })
    p.on('exit', (code) => rej(new Error(`${store} server exited (${code}) before listening`)))
  })
}

function stopServer(p) {
  return new Promise((res) => {
    let out = ''
    p.stdout.on('data', (d) => (out += d))
    p.removeAllListeners('exit')
    p.on('exit', () => res(Number(/closed (\d+)/.exec(out)?.[1] ?? NaN)))
    p.kill('SIGTERM')
  })
}

async function countOnDisk(store, dir) {
  if (store.startsWith('fastwal')) {
    const { WriteAheadLog } = await import('../dist/esm/index.mjs')
    const wal = await WriteAheadLog.open(join(dir, 'wal'), { readOnly: true })
    let n = 0
    for await (const _ of wal.replay({ from: 0 })) n++
    await wal.close()
    return n
  }
  if (store === 'sqlite') {
    const db = new (require('better-sqlite3'))(join(dir, 'events.sqlite'), { readonly: true })
    const n = db.prepare('SELECT count(*) AS n FROM events').get().n
    db.close()
    return n
  }
  if (store === 'lmdb') {
    const db = require('lmdb').open({ path: join(dir, 'lmdb'), encoding: 'string' })
    const n = db.getKeysCount()
    await db.close()
    return n
  }
  return NaN
}

const results = []
for (const c of conns) {
  for (const store of stores) {
    const dir = join(base, `${store}-${c}`)
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(dir, { recursive: true })
    const server = await startServer(store, dir)
    const url = `http://127.0.0.1:${server.port}`
    await fetch(`${url}/reset`, { method: 'POST' })
    const r = await autocannon({ url: `${url}/events`, method: 'POST', headers: { 'content-type': 'application/json' }, body, connections: c, duration })
    const stats = await (await fetch(`${url}/stats`)).json()
    const acceptedAtClose = await stopServer(server)
    const onDisk = await countOnDisk(store, dir)
    const sent202 = r['2xx']
    const row = {
      store,
      connections: c,
      reqPerSec: r.requests.average,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      eldP99Ms: stats.eldP99Ms,
      eldMaxMs: stats.eldMaxMs,
      rssMiB: stats.rssMiB,
      cpuUsPerRequest: stats.cpuUsPerRequest,
      sent202,
      onDisk,
      // Counting starts at /reset; every 202 of the run must be on disk (a request still in
      // flight when the run ended may be on disk without its 202 having been counted).
      countOk: store === 'none' ? true : onDisk >= sent202 && onDisk <= acceptedAtClose,
      errors: r.errors + r.non2xx,
      perSync: stats.perSync,
      syncP50Us: stats.syncP50Us,
    }
    results.push(row)
    fs.rmSync(dir, { recursive: true, force: true })
    console.log(JSON.stringify(row))
  }
}
fs.rmSync(base, { recursive: true, force: true })

// Table and ratios.
const f = (v, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : '-')
console.log(`\nHTTP ingestion (Fastify, 202 once durable; autocannon, ${duration} s per cell)`)
const head = ['store', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'loop p99 ms', 'loop max ms', 'RSS MiB', 'CPU µs/req', 'events/sync', '202s', 'on disk', 'count']
const rows = [head, ...results.map((r) => [r.store, String(r.connections), f(r.reqPerSec, 0), f(r.p50Ms), f(r.p99Ms), f(r.eldP99Ms), f(r.eldMaxMs), f(r.rssMiB, 0), f(r.cpuUsPerRequest, 0), f(r.perSync), String(r.sent202), f(r.onDisk, 0), r.countOk ? 'ok' : 'MISMATCH'])]
const w = head.map((_, i) => Math.max(...rows.map((r) => r[i].length)))
for (const r of rows) console.log('  ' + r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  '))
console.log('\nGoals')
for (const c of conns) {
  const get = (s) => results.find((r) => r.store === s && r.connections === c)
  const fw = get('fastwal-native')
  if (!fw) continue
  const none = get('none')
  if (none) console.log(`  ${c} conns: fastwal native / no storage        ${(fw.reqPerSec / none.reqPerSec).toFixed(2)}x  (goal >= 0.85x) ${fw.reqPerSec / none.reqPerSec >= 0.85 ? 'met' : 'NOT MET'}`)
  for (const s of ['sqlite', 'lmdb']) {
    const ref = get(s)
    if (ref) console.log(`  ${c} conns: fastwal native / ${s.padEnd(6)}            ${(fw.reqPerSec / ref.reqPerSec).toFixed(2)}x  (goal >= 1.3x) ${fw.reqPerSec / ref.reqPerSec >= 1.3 ? 'met' : 'NOT MET'}; p99 ${f(fw.p99Ms)} vs ${f(ref.p99Ms)} ms`)
  }
}
if (o.json) fs.writeFileSync(o.json, JSON.stringify({ duration, results }, null, 2) + '\n')
const bad = results.filter((r) => !r.countOk)
if (bad.length) {
  console.log(`\ncount check FAILED: ${bad.map((r) => `${r.store}/${r.connections}`).join(', ')}`)
  process.exitCode = 1
}
