// follow / followBatches (lib/replay.ts over lib/log-reader.ts) on a writable handle, and
// the live readOnly view (lib/read-only-view.ts): a follower yields what replay would, then
// every later committed entry once it is durable, in LSN order, each once, across
// rotations and checkpoints; it ends when the handle closes and rejects when aborted.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError, type Entry } from '../lib/index.js'
import { BACKENDS, tmpDir } from './helpers/util.js'

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms))

/** Settles-or-not probe: whether `p` settled within `ms`. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false
  p.then(
    () => (done = true),
    () => (done = true),
  )
  await tick(ms)
  return done
}

async function take<T>(it: AsyncIterator<T>, n: number): Promise<T[]> {
  const out: T[] = []
  while (out.length < n) {
    const r = await it.next()
    if (r.done) break
    out.push(r.value)
  }
  return out
}

function checkSequence(entries: Entry[], n: number, where: string): void {
  assert.is(entries.length, n, `${where}: count`)
  for (let i = 0; i < n; i++) {
    assert.is(entries[i].key.toString(), `k${i}`, `${where}: entry ${i}`)
    if (i > 0) assert.ok(entries[i].lsn > entries[i - 1].lsn, `${where}: LSN order at ${i}`)
  }
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)
  const small = { backend, segmentSize: 4096, preallocate: false } as const

  t('follow yields every committed entry once, in order, across 20+ rotations (append, appendBatch, appendSync mixed)', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), small)
    const TOTAL = 900
    const it = wal.follow({ from: 0 })
    const consumer = take(it, TOTAL)
    let i = 0
    let round = 0
    while (i < TOTAL) {
      const value = 'v'.repeat(20 + (round % 50))
      const kind = round++ % 3
      if (kind === 0) await wal.append({ type: 'put', key: `k${i++}`, value })
      else if (kind === 1) {
        const n = Math.min(TOTAL - i, 1 + (round % 5))
        const ops = Array.from({ length: n }, () => ({ type: 'put' as const, key: `k${i++}`, value }))
        await wal.appendBatch(ops)
      } else wal.appendSync({ type: 'put', key: `k${i++}`, value })
    }
    const seen = await consumer
    checkSequence(seen, TOTAL, 'follow')
    assert.ok(wal.stats().rotations >= 20, `rotations: ${wal.stats().rotations}`)
    // The batch view of the same log: whole batches, in order.
    const batches = await take(wal.followBatches({ from: 0 }), 1)
    assert.is(batches[0].first, seen[0].lsn)
    await it.return!()
    await wal.close()
  })

  t('return() on a follower waiting for the log ends it at once and releases its files', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), small)
    await wal.append({ type: 'put', key: 'k0', value: 'v' })
    const it = wal.follow({ from: 0 })
    await it.next()
    const pending = it.next()
    assert.not.ok(await settledWithin(pending, 30))
    const ended = it.return!()
    assert.ok(await settledWithin(ended, 100), 'return() waited for the log to change')
    assert.equal(await pending, { value: undefined, done: true })
    assert.is(wal.stats().readers, 0)
    await wal.close()
  })

  t("under sync 'none' nothing is yielded before it is durable; sync() releases it", async () => {
    const wal = await WriteAheadLog.open(tmpDir(), { ...small, sync: 'none' })
    const it = wal.follow({ from: 0 })
    for (let i = 0; i < 10; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v' })
    const first = it.next()
    assert.not.ok(await settledWithin(first, 100), 'an entry not yet synced was yielded')
    assert.ok(wal.durableLsn < wal.lastLsn)
    await wal.sync()
    const r = await first
    assert.is(r.done, false)
    assert.is((r.value as Entry).key.toString(), 'k0')
    const rest = await take(it, 9)
    assert.ok(rest.every((e) => e.lsn <= wal.durableLsn))
    assert.is(rest.length, 9)
    await wal.close()
  })

  t('checkpoint during follow and during replay leaves no gap', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), small)
    const TOTAL = 600
    const followed: Entry[] = []
    const follower = (async () => {
      for await (const e of wal.follow({ from: 0 })) {
        followed.push(e)
        if (followed.length === TOTAL) break
      }
    })()
    for (let i = 0; i < TOTAL; i++) {
      await wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(60) })
      if (i % 50 === 49) await wal.checkpoint(wal.lastLsn) // deletes what no reader holds
    }
    await follower
    checkSequence(followed, TOTAL, 'follow under checkpoints')
    // A replay that checkpoints each entry it has applied never loses one either.
    for (let i = TOTAL; i < TOTAL + 200; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(60) })
    const replayed: Entry[] = []
    for await (const e of wal.replay()) {
      replayed.push(e)
      await wal.checkpoint(e.lsn)
    }
    assert.is(replayed.length, 200)
    assert.equal(replayed.map((e) => e.key.toString()), Array.from({ length: 200 }, (_, k) => `k${TOTAL + k}`))
    await wal.close()
  })

  t('follow from below firstLsn is WAL_GONE, from 0 starts at firstLsn', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), small)
    for (let i = 0; i < 300; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(60) })
    await wal.checkpoint(200)
    assert.ok(wal.firstLsn > 1)
    const gone = wal.follow({ from: 1 })
    try {
      await gone.next()
      assert.unreachable('follow from a deleted LSN yielded')
    } catch (err) {
      assert.instance(err, WalError)
      assert.is((err as WalError).code, 'WAL_GONE')
      assert.is((err as WalError).firstLsn, wal.firstLsn)
    }
    const from0 = await take(wal.follow({ from: 0 }), 1)
    assert.is(from0[0].lsn, wal.firstLsn)
    await wal.close()
  })

  t('abort rejects the pending and every later next() with the reason; close ends a follower', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), small)
    await wal.append({ type: 'put', key: 'k0', value: 'v' })
    const ac = new AbortController()
    const it = wal.follow({ from: 0, signal: ac.signal })
    assert.is(((await it.next()).value as Entry).key.toString(), 'k0')
    const pending = it.next()
    assert.not.ok(await settledWithin(pending, 30))
    const reason = new Error('stop following')
    ac.abort(reason)
    try {
      await pending
      assert.unreachable('the pending next() resolved after abort')
    } catch (err) {
      assert.is(err, reason)
    }
    try {
      await it.next()
      assert.unreachable('a later next() resolved after abort')
    } catch (err) {
      assert.is(err, reason)
    }
    assert.is(wal.stats().readers, 0, 'the aborted follower released its files')

    const open = wal.followBatches({ from: wal.lastLsn + 1 })
    const waiting = open.next()
    assert.not.ok(await settledWithin(waiting, 30))
    await wal.close()
    assert.equal(await waiting, { value: undefined, done: true })
    assert.equal(await open.next(), { value: undefined, done: true })
  })

  t('a readOnly handle replays records appended after it was opened, and follows the writer live', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, small)
    for (let i = 0; i < 5; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v' })
    const ro = await WriteAheadLog.open(dir, { ...small, readOnly: true })
    for (let i = 5; i < 200; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'y'.repeat(40) })
    const replayed: Entry[] = []
    for await (const e of ro.replay({ from: 0 })) replayed.push(e)
    checkSequence(replayed, 200, 'readOnly replay')
    // The writer publishes its durable LSN with a write on the thread pool: it lands soon after.
    for (let i = 0; i < 100 && ro.stats().durableLsn < wal.durableLsn; i++) await tick(10)
    assert.is(ro.durableLsn, wal.durableLsn, 'the published durable LSN')
    const it = ro.follow({ from: 0 })
    const head = await take(it, 200)
    checkSequence(head, 200, 'readOnly follow, backlog')
    const more = take(it, 100)
    for (let i = 200; i < 300; i++) await wal.appendBatch([{ type: 'put', key: `k${i}`, value: 'z'.repeat(40) }])
    checkSequence([...head, ...(await more)], 300, 'readOnly follow, live across rotations')
    await ro.close()
    await wal.close()
  })

  t('logId: 32 hex digits, kept across reopen and checkpoint, the same for readers, new for a recreated directory', async () => {
    const dir = tmpDir()
    let wal = await WriteAheadLog.open(dir, small)
    const id = wal.logId
    assert.match(id, /^[0-9a-f]{32}$/)
    for (let i = 0; i < 200; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(60) })
    await wal.checkpoint(wal.lastLsn)
    await wal.close()
    wal = await WriteAheadLog.open(dir, small)
    assert.is(wal.logId, id)
    const ro = await WriteAheadLog.open(dir, { ...small, readOnly: true })
    assert.is(ro.logId, id)
    await ro.close()
    await wal.close()
    const { rmSync } = await import('node:fs')
    rmSync(dir, { recursive: true })
    const again = await WriteAheadLog.open(dir, small)
    assert.match(again.logId, /^[0-9a-f]{32}$/)
    assert.is.not(again.logId, id)
    await again.close()
  })

  t('stats(): counts, positions and sync latency of this handle', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), small)
    for (let i = 0; i < 50; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(100) })
    await wal.appendBatch([
      { type: 'put', key: 'a', value: '1' },
      { type: 'del', key: 'b' },
    ])
    const s = wal.stats()
    assert.is(s.lastLsn, 52)
    assert.is(s.durableLsn, 52)
    assert.is(s.firstLsn, 1)
    assert.is(s.checkpointLsn, 0)
    assert.is(s.appends, 50)
    assert.is(s.batches, 1)
    assert.ok(s.syncs >= 51, `syncs ${s.syncs}`)
    assert.ok(s.bytesWritten >= 50 * 132, `bytesWritten ${s.bytesWritten}`)
    assert.ok(s.segments >= 2 && s.rotations === s.segments - 1, `segments ${s.segments} rotations ${s.rotations}`)
    assert.ok(s.syncLatencyUs.p50 > 0 && s.syncLatencyUs.p50 <= s.syncLatencyUs.p99 && s.syncLatencyUs.p99 <= s.syncLatencyUs.max)
    assert.ok(s.bytesOnDisk > s.bytesWritten / 2)
    assert.ok(s.groupCommit.mean >= 1 && s.groupCommit.max >= 1)
    await wal.close()
  })
}

test.run()
