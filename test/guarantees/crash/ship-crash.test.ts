// Exactly once into JetStream, whatever happens to the shipper and the server: the sidecar
// (`fastwal ship`, a readOnly handle in another process) is SIGKILLed at random moments and
// the NATS server restarted while a writer appends and checkpoints; at the end the stream
// holds every committed batch exactly once, in LSN order, one message each, with the bodies
// that were appended.
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, type Batch } from '../../../lib/index.js'
import { BACKENDS, prng, tmpDir } from '../../helpers/util.js'
import { natsAvailable, startNats, streamMessages } from '../../helpers/nats.js'

const ROOT = join(__dirname, '..', '..', '..')
const BIN = join(ROOT, 'bin', 'fastwal.js')
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms))

function startShipper(dir: string, url: string): { child: ChildProcess; exited: Promise<number | null>; output: () => string } {
  const child = spawn(process.execPath, [BIN, 'ship', dir, '--nats', url, '--stream', 'wal', '--progress-ms', '200'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
  return { child, exited, output: () => out }
}

async function lastShipped(url: string, subject: string): Promise<number> {
  const { connect } = await import('@nats-io/transport-node')
  const { jetstreamManager } = await import('@nats-io/jetstream')
  const nc = await connect({ servers: url, reconnect: false }).catch(() => undefined)
  if (!nc) return -1
  try {
    const jsm = await jetstreamManager(nc)
    const m = await jsm.streams.getMessage('wal', { last_by_subj: subject }).catch(() => null)
    return m ? Number(m.header.get('Fastwal-Last')) : 0
  } finally {
    await nc.close()
  }
}

if (natsAvailable('test/guarantees/crash/ship-crash.test.ts')) {
  for (const backend of BACKENDS) {
    test(`[${backend}] SIGKILLed shipper (6 times), restarted server (2 times) and restarted writer (2 times) while the writer appends and checkpoints: every batch exactly once, in order`, async () => {
      const next32 = prng(backend === 'native' ? 7 : 11)
      const rand = () => next32() / 2 ** 32 // in [0, 1)
      const server = await startNats()
      const dir = tmpDir()
      let wal = await WriteAheadLog.open(dir, { backend, segmentSize: 8192, preallocate: false })
      // The shipper's cursor exists before the first checkpoint, as in a deployment: nothing
      // is deleted before it is shipped.
      await wal.cursor('jetstream')
      const expected: { first: number; last: number; keys: string[]; values: string[] }[] = []
      let writing = true
      let restartWriter = false
      let writerRestarts = 0
      let n = 0
      const writer = (async () => {
        while (writing) {
          if (restartWriter) {
            // The writer restarts (close, reopen): the sidecar follows on.
            restartWriter = false
            await wal.close()
            wal = await WriteAheadLog.open(dir, { backend, segmentSize: 8192, preallocate: false })
            writerRestarts++
          }
          const size = 1 + Math.floor(rand() * 4)
          const ops = Array.from({ length: size }, () => ({ type: 'put' as const, key: `k${n++}`, value: 'v'.repeat(Math.floor(rand() * 200)) }))
          if (size === 1) {
            const lsn = await wal.append(ops[0])
            expected.push({ first: lsn, last: lsn, keys: [ops[0].key], values: [ops[0].value] })
          } else {
            const { first, last } = await wal.appendBatch(ops)
            expected.push({ first, last, keys: ops.map((o) => o.key), values: ops.map((o) => o.value) })
          }
          if (expected.length % 40 === 0) await wal.checkpoint(wal.lastLsn) // the shipper's cursor keeps what is not shipped
          await tick(2)
        }
      })()
      let shipper = startShipper(dir, server.url)
      const kills = 6
      let restarts = 0
      try {
        for (let k = 0; k < kills; k++) {
          await tick(300 + Math.floor(rand() * 900))
          if (k === 2 || k === 5) restartWriter = true
          if (k === 1 || k === 4) {
            await server.restart()
            restarts++
            await tick(200 + Math.floor(rand() * 400))
          }
          shipper.child.kill('SIGKILL')
          await shipper.exited
          shipper = startShipper(dir, server.url)
        }
        while (restartWriter) await tick(10) // the last writer restart asked for has happened
        writing = false
        await writer
        const subject = `fastwal.${wal.logId}`
        const deadline = Date.now() + 30_000
        while ((await lastShipped(server.url, subject)) !== wal.lastLsn) {
          if (Date.now() > deadline) throw new Error(`the shipper did not catch up:\n${shipper.output()}`)
          await tick(100)
        }
        await tick(400) // a progress line or two while idle
        shipper.child.kill('SIGTERM')
        assert.is(await shipper.exited, 0, `a clean stop on SIGTERM:\n${shipper.output()}`)
        assert.match(shipper.output(), new RegExp(`stopped at LSN ${wal.lastLsn}`))
        assert.match(shipper.output(), /shipped LSN \d+, lag \d+ entries/)
        const msgs = await streamMessages(server.url, 'wal', subject)
        assert.is(restarts, 2)
        assert.is(writerRestarts, 2)
        if (msgs.length !== expected.length) {
          const got = new Set(msgs.map((m) => m.first))
          const missing = expected.filter((e) => !got.has(e.first)).map((e) => e.first)
          console.log('missing firsts ' + JSON.stringify(missing.slice(0, 40)), 'of', expected.length, 'msgs', msgs.length, 'dups', msgs.length - got.size, 'first msg', msgs[0]?.first)
        }
        assert.is(msgs.length, expected.length, `one message per batch, no duplicate (${msgs.length} messages, ${expected.length} batches)`)
        msgs.forEach((m, i) => {
          assert.is(m.first, expected[i].first, `message ${i}`)
          assert.is(m.last, expected[i].last, `message ${i}`)
          assert.equal(
            m.batch.entries.map((e: Batch['entries'][number]) => e.key.toString()),
            expected[i].keys,
            `message ${i} body`,
          )
          assert.equal(
            m.batch.entries.map((e: Batch['entries'][number]) => e.value?.toString()),
            expected[i].values,
            `message ${i} values`,
          )
        })
        assert.ok(wal.firstLsn > 1, 'checkpoints deleted shipped segments')
      } finally {
        writing = false
        shipper.child.kill('SIGKILL')
        await writer.catch(() => undefined)
        await wal.close()
        await server.stop()
      }
    })
  }
}

test.run()
