// The DURABLE file: the writer's durable LSN for readers in other processes. With the native
// backend each commit's own pool job writes it right after its sync (no second job per
// commit); the pure-TS backend rewrites it after the commit, coalesced. Either way it never
// runs ahead of what is acknowledged and ends at the last durable LSN.
import { createHook } from 'node:async_hooks'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../lib/index.js'
import { readDurable } from '../lib/durable-file.js'
import { BACKENDS, backendImpl, tmpDir } from './helpers/util.js'

/** Counts the node:fs requests to the thread pool (FSREQCALLBACK) made while `fn` runs. */
async function countFsRequests(fn: () => Promise<void>): Promise<number> {
  let n = 0
  const hook = createHook({
    init(_id, type) {
      if (type === 'FSREQCALLBACK') n++
    },
  }).enable()
  try {
    await fn()
  } finally {
    hook.disable()
  }
  return n
}

if (process.platform === 'linux') {
  test('native: DURABLE holds each acknowledged LSN when its append resolves, written by the commit job itself (no node:fs request per commit)', async () => {
    const dir = tmpDir('durable-native')
    const wal = await WriteAheadLog.open(dir, { backend: 'native' })
    const backend = backendImpl('native')
    const seen: [number, number | undefined][] = []
    const requests = await countFsRequests(async () => {
      for (let i = 0; i < 50; i++) {
        const lsn = await wal.append({ type: 'put', key: Buffer.from(`k${i}`), value: Buffer.from('v') })
        seen.push([lsn, readDurable(dir, backend)])
      }
      const { last } = await wal.appendBatch([
        { type: 'put', key: Buffer.from('a'), value: Buffer.from('1') },
        { type: 'del', key: Buffer.from('b') },
      ])
      seen.push([last, readDurable(dir, backend)])
    })
    await wal.close()
    assert.equal(
      seen.filter(([lsn, durable]) => durable !== lsn),
      [],
      'DURABLE equals the LSN just acknowledged',
    )
    assert.ok(requests < 5, `no separate write of DURABLE per commit: ${requests} node:fs requests for 51 commits`)
    assert.is(readDurable(dir, backend), seen[seen.length - 1][0])
  })
}

for (const name of BACKENDS) {
  test(`${name}: DURABLE never runs ahead of durableLsn and ends at it, with appends overlapping and blocking syncs in between`, async () => {
    const dir = tmpDir(`durable-${name}`)
    const wal = await WriteAheadLog.open(dir, { backend: name })
    const backend = backendImpl(name)
    const ahead: string[] = []
    const check = () => {
      const d = readDurable(dir, backend)
      if (d !== undefined && d > wal.durableLsn) ahead.push(`${d} > ${wal.durableLsn}`)
    }
    for (let round = 0; round < 20; round++) {
      const pending = Array.from({ length: 20 }, (_, i) => wal.append({ type: 'put', key: Buffer.from(`k${round}-${i}`), value: Buffer.from('v') }).then(check))
      if (round % 3 === 0) wal.appendSync({ type: 'put', key: Buffer.from(`s${round}`), value: Buffer.from('v') }) // a blocking commit while the pool one is in flight
      check()
      await Promise.all(pending)
    }
    await wal.sync()
    await new Promise((r) => setTimeout(r, 20)) // the pure-TS backend's rewrite is asynchronous
    assert.equal(ahead, [], 'never ahead')
    assert.is(readDurable(dir, backend), wal.durableLsn, 'ends at the durable LSN')
    await wal.close()
    assert.is(readDurable(dir, backend), wal.durableLsn)
  })
}

test.run()
