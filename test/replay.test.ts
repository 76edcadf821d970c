// The replay iterators (lib/replay.ts): entries come out in LSN order however next() calls
// overlap; return() while a chunk is being read on the thread pool ends iteration cleanly;
// the entries yielded stay valid after iteration moves on. A writer's iterator first hands
// what is staged to the OS without syncing it, and after a write failure still reads what
// is on disk.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, type Entry } from '../lib/index.js'
import type { Backend } from '../lib/backend.js'
import { BACKENDS, tmpDir } from './helpers/util.js'
import { collect, rejectsWith } from './helpers/wal.js'

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)
  const opts = { backend, segmentSize: 4096, preallocate: false } as const

  t('return() while a chunk is being read: no entries after it, the fd outlives the read', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), { backend })
    try {
      const value = Buffer.alloc(64 * 1024, 3)
      for (let i = 0; i < 40; i++) wal.appendSync({ type: 'put', key: `k${i}`, value })
      const it = wal.replay({ from: 0 }) as AsyncIterableIterator<Entry> & { i: number; items: unknown[] }
      await it.next()
      while (it.i < it.items.length) await it.next()
      const pending = it.next() // a read on the thread pool now
      await it.return!()
      const r = await pending // settles cleanly: no EBADF, no entry after return()
      assert.ok(r.done)
      assert.ok((await it.next()).done)
    } finally {
      await wal.close()
    }
  })

  t('overlapping next() calls get entries in LSN order', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), { backend })
    try {
      const value = Buffer.alloc(40 * 1024, 5)
      for (let i = 0; i < 60; i++) wal.appendSync({ type: 'put', key: `k${i}`, value })
      const it = wal.replay({ from: 0 })
      const results = await Promise.all(Array.from({ length: 60 }, () => it.next()))
      assert.equal(
        results.map((r) => r.value?.lsn),
        Array.from({ length: 60 }, (_, i) => i + 1),
      )
    } finally {
      await wal.close()
    }
  })

  t('entries stay valid after iteration moves on', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend })
    for (let i = 0; i < 5000; i++) wal.appendSync({ type: 'put', key: `key-${i}`, value: `value-${i}`.repeat(30) })
    const all = await collect(wal.replay({ from: 0 }))
    all.forEach((e, i) => {
      assert.is(e.key.toString(), `key-${i}`)
      assert.is(e.value!.toString(), `value-${i}`.repeat(30))
    })
    await wal.close()
  })

  // A failed writer refuses appends, but its log stays readable: the flush before a read
  // neither syncs nor fails.
  t('after a write failure, replay still reads what is on disk', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, opts)
    for (let i = 1; i <= 5; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v' })
    const impl = (wal as unknown as { impl: { -readonly [K in keyof Backend]: Backend[K] } }).impl
    const write = impl.write
    impl.write = async () => {
      throw Object.assign(new Error('EIO: simulated'), { code: 'EIO', syscall: 'write' })
    }
    try {
      await rejectsWith(wal.append({ type: 'put', key: 'lost', value: 'v' }), 'WAL_IO')
    } finally {
      impl.write = write
    }
    await rejectsWith(wal.append({ type: 'put', key: 'later', value: 'v' }), 'WAL_FAILED')
    const keys = (await collect(wal.replay({ from: 0 }))).map((e) => e.key.toString())
    assert.equal(keys, ['k1', 'k2', 'k3', 'k4', 'k5'])
    assert.equal([...wal.replaySync({ from: 0 })].length, 5)
    await wal.close()
  })

  // A writer's iterator hands what is staged to the OS before reading, without syncing it:
  // replay costs no fdatasync and does not move durableLsn.
  t('replay under sync none costs no fdatasync and does not change durableLsn', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), { ...opts, sync: 'none' })
    await wal.sync()
    const impl = (wal as unknown as { impl: { -readonly [K in keyof Backend]: Backend[K] } }).impl
    const { write, fdatasync, fdatasyncBlocking } = impl
    let syncs = 0
    impl.write = (fd, buf, off, len, pos, s) => {
      if (s) syncs++
      return write(fd, buf, off, len, pos, s)
    }
    impl.fdatasync = (fd) => (syncs++, fdatasync(fd))
    impl.fdatasyncBlocking = (fd) => (syncs++, fdatasyncBlocking(fd))
    try {
      for (let i = 1; i <= 10; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v' })
      const durable = wal.durableLsn
      assert.is((await collect(wal.replay({ from: 0 }))).length, 10)
      assert.is(syncs, 0)
      assert.is(wal.durableLsn, durable)
    } finally {
      Object.assign(impl, { write, fdatasync, fdatasyncBlocking })
    }
    await wal.close()
  })
}

test.run()
