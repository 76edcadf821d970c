// fastwal/jetstream (lib/jetstream.ts) against a real nats-server started by the test:
// one message per committed batch with the documented headers and body; the resume point
// read from the stream; a recreated log directory (new logId) never collides with the old
// one; a server that requires a user and TLS refuses a shipper without them and takes one
// with them, and no secret appears in what the shipper reports.
import { execFileSync, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, decodeBatch, type Batch } from '../lib/index.js'
import { BACKENDS, tmpDir } from './helpers/util.js'
import { natsAvailable, startNats, streamMessages } from './helpers/nats.js'

const ROOT = join(__dirname, '..')
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await tick(20)
  }
}

function plain(b: Batch) {
  return b.entries.map((e) => `${e.lsn}:${e.type}:${e.key.toString()}:${e.value?.toString() ?? '-'}`)
}

if (natsAvailable('test/jetstream.test.ts')) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { shipToJetStream } = require('../lib/jetstream.js') as typeof import('../lib/jetstream.js')

  for (const backend of BACKENDS) {
    test(`[${backend}] ships every committed batch once, in order, as documented; resumes from the stream; a new logId never collides`, async () => {
      const server = await startNats()
      try {
        const dir = tmpDir()
        let wal = await WriteAheadLog.open(dir, { backend, segmentSize: 4096 })
        const expected: Batch[] = []
        const add = async (i: number) => {
          if (i % 3 === 0) {
            const lsn = await wal.append({ type: 'put', key: `k${i}`, value: `v${i}` })
            expected.push({ first: lsn, last: lsn, entries: [{ lsn, type: 'put', key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) }] })
          } else {
            const ops = [
              { type: 'put' as const, key: `k${i}`, value: 'x'.repeat(i * 7) },
              { type: 'del' as const, key: `d${i}` },
            ]
            const { first } = await wal.appendBatch(ops)
            expected.push({ first, last: first + 1, entries: [{ lsn: first, type: 'put', key: Buffer.from(`k${i}`), value: Buffer.from('x'.repeat(i * 7)) }, { lsn: first + 1, type: 'del', key: Buffer.from(`d${i}`), value: undefined }] })
          }
        }
        for (let i = 0; i < 30; i++) await add(i)
        let shipper = await shipToJetStream(wal, { servers: server.url, stream: 'orders' })
        for (let i = 30; i < 60; i++) await add(i)
        await until('shipping', () => shipper.shippedLsn === wal.lastLsn)
        await shipper.stop()
        assert.is((await wal.cursor('jetstream')).lsn, wal.lastLsn, 'the cursor is confirmed at shippedLsn')
        const subject = `fastwal.${wal.logId}`
        let msgs = await streamMessages(server.url, 'orders', subject)
        assert.is(msgs.length, expected.length, 'one message per committed batch')
        msgs.forEach((m, k) => {
          assert.is(m.first, expected[k].first)
          assert.is(m.last, expected[k].last)
          assert.is(m.log, wal.logId)
          assert.is(m.msgId, `${wal.logId}:${m.first}`)
          assert.equal(plain(m.batch), plain(expected[k]), `message ${k}`)
        })
        // A second shipper resumes after the stream's last message: nothing twice.
        for (let i = 60; i < 70; i++) await add(i)
        shipper = await shipToJetStream(wal, { servers: server.url, stream: 'orders' })
        await until('shipping again', () => shipper.shippedLsn === wal.lastLsn)
        await shipper.stop()
        msgs = await streamMessages(server.url, 'orders', subject)
        assert.equal(msgs.map((m) => m.first), expected.map((b) => b.first))
        await wal.close()
        // The directory deleted and created again: a new logId, its own subject, from LSN 1.
        const oldId = wal.logId
        fs.rmSync(dir, { recursive: true })
        wal = await WriteAheadLog.open(dir, { backend, segmentSize: 4096 })
        assert.is.not(wal.logId, oldId)
        await wal.append({ type: 'put', key: 'new', value: 'log' })
        shipper = await shipToJetStream(wal, { servers: server.url, stream: 'orders' })
        await until('the new log shipped', () => shipper.shippedLsn === 1)
        await shipper.stop()
        const fresh = await streamMessages(server.url, 'orders', `fastwal.${wal.logId}`)
        assert.equal(fresh.map((m) => [m.first, m.last]), [[1, 1]])
        assert.is((await streamMessages(server.url, 'orders', subject)).length, expected.length, 'the old log is untouched')
        await wal.close()
      } finally {
        await server.stop()
      }
    })
  }

  test('two logs shipped at once into one shared stream: the batches of each exactly once, in order', async () => {
    const server = await startNats()
    try {
      const { connect } = await import('@nats-io/transport-node')
      const { jetstreamManager, StorageType } = await import('@nats-io/jetstream')
      const nc = await connect({ servers: server.url })
      await (await jetstreamManager(nc)).streams.add({ name: 'shared', subjects: ['fastwal.>'], storage: StorageType.File })
      await nc.close()
      const logs = await Promise.all([0, 1].map(() => WriteAheadLog.open(tmpDir(), { backend: 'js' })))
      const shippers = await Promise.all(logs.map((wal) => shipToJetStream(wal, { servers: server.url, stream: 'shared' })))
      // Both write and ship at once: their messages interleave in the stream.
      await Promise.all(logs.map(async (wal, k) => {
        for (let i = 0; i < 150; i++) {
          if (i % 2) await wal.append({ type: 'put', key: `l${k}-${i}`, value: 'v' })
          else await wal.appendBatch([{ type: 'put', key: `l${k}-${i}`, value: 'v' }, { type: 'del', key: `l${k}-${i}` }])
        }
      }))
      await until('both shipped', () => shippers.every((s, k) => s.shippedLsn === logs[k].lastLsn), 30_000)
      for (const s of shippers) await s.stop()
      for (const [k, wal] of logs.entries()) {
        const msgs = await streamMessages(server.url, 'shared', `fastwal.${wal.logId}`)
        const expected: number[] = []
        for await (const b of wal.replayBatches({ from: 0 })) expected.push(b.first)
        assert.equal(msgs.map((m) => m.first), expected, `log ${k}: every batch once, in order`)
        await wal.close()
      }
    } finally {
      await server.stop()
    }
  })

  test('a server that requires a user and TLS refuses a shipper without them and takes one with them; no secret is reported', async () => {
    const certs = tmpDir('certs')
    fs.mkdirSync(certs, { recursive: true })
    const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: certs, stdio: 'ignore' })
    ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=fastwal test CA'])
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'])
    fs.writeFileSync(join(certs, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
    ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf'])
    const secret = 's3cret-pa55'
    const server = await startNats({
      scheme: 'tls',
      config: `tls { cert_file: "${join(certs, 'server.pem')}", key_file: "${join(certs, 'server.key')}", ca_file: "${join(certs, 'ca.pem')}" }\nauthorization { user: shipper, password: "${secret}" }\n`,
    })
    try {
      const wal = await WriteAheadLog.open(tmpDir(), { backend: 'js' })
      await wal.appendBatch([{ type: 'put', key: 'a', value: '1' }])
      const errors: string[] = []
      const refused = await shipToJetStream(wal, { servers: server.url, stream: 'secure', connection: { tls: { caFile: join(certs, 'ca.pem') } }, onError: (e) => errors.push(e.message) })
      await until('the refusal', () => errors.length >= 1, 10_000)
      assert.is(refused.shippedLsn, 0)
      await refused.stop()
      const wrong: string[] = []
      const bad = await shipToJetStream(wal, { servers: `tls://shipper:${secret}x@127.0.0.1:${server.port}`, stream: 'secure', connection: { tls: { caFile: join(certs, 'ca.pem') } }, onError: (e) => wrong.push(e.message) })
      await until('the refusal of a wrong password', () => wrong.length >= 1, 10_000)
      await bad.stop()
      for (const m of [...errors, ...wrong, JSON.stringify(bad.stats())]) assert.not.ok(m.includes(secret), `a secret was reported: ${m}`)
      const okErrors: string[] = []
      const ok = await shipToJetStream(wal, { servers: server.url, stream: 'secure', connection: { user: 'shipper', pass: secret, tls: { caFile: join(certs, 'ca.pem') } }, onError: (e) => okErrors.push(e.message) })
      await until('shipping over TLS with a user', () => ok.shippedLsn === wal.lastLsn).catch((err) => {
        throw new Error(`${err.message}; shipper errors: ${okErrors.join(' | ')}`)
      })
      assert.not.ok(JSON.stringify(ok.stats()).includes(secret))
      await ok.stop()
      await wal.close()
    } finally {
      await server.stop()
    }
  })

  test('fastwal/jetstream without the NATS clients says what to install; fastwal itself never loads them', () => {
    const hook = join(tmpDir('hook'), 'hide-nats.js')
    fs.mkdirSync(join(hook, '..'), { recursive: true })
    fs.writeFileSync(hook, "const M = require('module'); const r = M._resolveFilename; M._resolveFilename = function (req, ...a) { if (req.startsWith('@nats-io/')) { const e = new Error(`Cannot find module '${req}'`); e.code = 'MODULE_NOT_FOUND'; throw e } return r.call(this, req, ...a) }\n")
    const run = (code: string) => spawnSync(process.execPath, ['-r', hook, '-e', code], { cwd: ROOT, encoding: 'utf8' })
    const core = run("require('./dist/cjs/index.js'); console.log('core ok ' + String(Object.keys(require.cache).some((k) => k.includes('@nats-io'))))")
    assert.is(core.stdout.trim(), 'core ok false', core.stderr)
    const js = run("try { require('./dist/cjs/jetstream.js') } catch (e) { console.log(e.code, e.message) }")
    assert.match(js.stdout, /WAL_INVALID/)
    assert.match(js.stdout, /npm install @nats-io\/transport-node @nats-io\/jetstream/)
  })
}

test.run()
