// Edge cases of the write path and the replay iterator found in review: each test fails
// without its fix. Some patch the backend object the log uses (restored afterwards) to
// hold a thread-pool write back or fail a sync at a chosen moment.
import * as fs from 'node:fs'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError, type Entry } from '../lib/index.js'
import type { Backend } from '../lib/backend.js'
import { BACKENDS, segmentFiles, tmpDir } from './helpers/util.js'

type Patchable = { -readonly [K in keyof Backend]: Backend[K] }
function impl(wal: WriteAheadLog): Patchable {
  return (wal as unknown as { impl: Patchable }).impl
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)

  t('a sync that fails on the synchronous path also fails the append in flight on the pool', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), { backend, preallocate: false })
    const b = impl(wal)
    const { write, fdatasyncBlocking } = b
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    try {
      b.write = async (...args) => {
        await gate
        return write(...args)
      }
      const inFlight = wal.append({ type: 'put', key: 'a', value: '1' })
      const outcome = inFlight.then(
        () => 'resolved',
        (e: WalError) => e.code,
      )
      await new Promise((r) => setImmediate(r)) // the append's job is now on the pool
      b.fdatasyncBlocking = () => {
        throw Object.assign(new Error('EIO: simulated'), { code: 'EIO', syscall: 'fdatasync' })
      }
      let code = ''
      try {
        wal.appendSync({ type: 'put', key: 'b', value: '2' })
      } catch (e) {
        code = (e as WalError).code
      }
      assert.is(code, 'WAL_IO')
      b.fdatasyncBlocking = fdatasyncBlocking
      release()
      // Linux reports a writeback error once per open file: the pool's own sync may
      // "succeed" after the failed one, which must not acknowledge the append.
      assert.is(await outcome, 'WAL_IO')
      assert.is(wal.durableLsn, 0)
    } finally {
      b.write = write
      b.fdatasyncBlocking = fdatasyncBlocking
      release()
      await wal.close()
    }
  })

  t('replay running while the writer rotates never reports a half-written old segment as damage', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), { backend, segmentSize: 4 * 1024 * 1024 })
    const b = impl(wal)
    const { write } = b
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let first = true
    try {
      const value = Buffer.alloc(64 * 1024, 7)
      for (let i = 0; i < 46; i++) wal.appendSync({ type: 'put', key: `k${i}`, value })
      // The next pool write lands in two halves, with a pause between them.
      b.write = async (fd, buf, off, len, pos, sync) => {
        if (!first) return write(fd, buf, off, len, pos, sync)
        first = false
        const half = Math.floor(len / 2) + 100
        await write(fd, buf, off, half, pos, false)
        await gate
        return write(fd, buf, off + half, len - half, pos + half, sync)
      }
      const it = wal.replay({ from: 0 })
      assert.is((await it.next()).value?.lsn, 1)
      const a = wal.append({ type: 'put', key: 'A', value: Buffer.alloc(512 * 1024, 1) })
      await new Promise((r) => setTimeout(r, 30))
      const c = wal.append({ type: 'put', key: 'B', value: Buffer.alloc(900 * 1024, 2) }) // rotates
      let n = 1
      for (let r = await it.next(); !r.done; r = await it.next()) n++
      assert.is(n, 46, 'the replay sees what was written when it caught up, and no damage')
      release()
      assert.equal([await a, await c], [47, 48])
    } finally {
      b.write = write
      release()
      await wal.close()
    }
  })

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

  t('two checkpoints at once delete exactly the checkpointed segments', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize: 4096, preallocate: false })
    const value = Buffer.alloc(1000, 1)
    for (let i = 0; i < 40; i++) wal.appendSync({ type: 'put', key: `k${i}`, value })
    const before = segmentFiles(dir).length
    await Promise.all([wal.checkpoint(8), wal.checkpoint(9)])
    const lsns: number[] = []
    for await (const e of wal.replay({ from: 0 })) lsns.push(e.lsn)
    assert.is(lsns[lsns.length - 1], 40, 'no live segment dropped from the writer list')
    assert.ok(lsns.every((l, i) => i === 0 || l === lsns[i - 1] + 1), 'no gap')
    await wal.close()
    // The files left on disk hold exactly what the live log replayed.
    const again = WriteAheadLog.openSync(dir, { backend, segmentSize: 4096, preallocate: false })
    assert.equal([...again.replaySync({ from: 0 })].map((e) => e.lsn), lsns)
    assert.ok(segmentFiles(dir).length < before, 'checkpointed segments were deleted')
    assert.ok(lsns[0] <= 10, 'the segment holding LSN 10 was kept')
    again.closeSync()
  })
  // Issue 9 item 13.
  t('close rejects with WAL_IO when its own final sync fails, and still releases the lock', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, sync: 'none', preallocate: false })
    await wal.append({ type: 'put', key: 'a', value: '1' })
    const b = impl(wal)
    const { write } = b
    b.write = async (fd, buf, off, len, pos, sync) => {
      if (sync) throw Object.assign(new Error('EIO: simulated'), { code: 'EIO', syscall: 'fdatasync' })
      return write(fd, buf, off, len, pos, sync)
    }
    let code = 'resolved'
    try {
      await wal.close()
    } catch (e) {
      code = (e as WalError).code
    } finally {
      b.write = write
    }
    assert.is(code, 'WAL_IO')
    const again = await WriteAheadLog.open(dir, { backend, preallocate: false }) // the lock was released
    await again.close()
  })

  // Issue 9 item 16.
  t('async appends that rotate 100+ times make no blocking sync, write or truncate call on the event loop', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), { backend, segmentSize: 4096 })
    const b = impl(wal)
    const { writeBlocking, fdatasyncBlocking } = b
    // The module object itself (the namespace import's bindings read through to it).
    const m = require('node:fs') as Record<string, unknown>
    const { ftruncateSync, fsyncSync, fdatasyncSync, writeSync: fsWriteSync } = m as unknown as typeof fs
    const calls: string[] = []
    b.writeBlocking = (...a) => (calls.push('backend.writeBlocking'), writeBlocking(...a))
    b.fdatasyncBlocking = (fd) => (calls.push('backend.fdatasyncBlocking'), fdatasyncBlocking(fd))
    m.ftruncateSync = (...a: unknown[]) => (calls.push('ftruncateSync'), (ftruncateSync as (...x: unknown[]) => void)(...a))
    m.fsyncSync = (...a: unknown[]) => (calls.push('fsyncSync'), (fsyncSync as (...x: unknown[]) => void)(...a))
    m.fdatasyncSync = (...a: unknown[]) => (calls.push('fdatasyncSync'), (fdatasyncSync as (...x: unknown[]) => void)(...a))
    m.writeSync = (...a: unknown[]) => (calls.push('fs.writeSync'), (fsWriteSync as (...x: unknown[]) => number)(...a))
    try {
      const pending: Promise<number>[] = []
      for (let i = 0; i < 1200; i++) {
        pending.push(wal.append({ type: 'put', key: `k${i}`, value: 'v'.repeat(300) }))
        if (i % 8 === 7) await Promise.all(pending.splice(0))
      }
      await Promise.all(pending)
      await wal.checkpoint(600)
    } finally {
      Object.assign(b, { writeBlocking, fdatasyncBlocking })
      Object.assign(m, { ftruncateSync, fsyncSync, fdatasyncSync, writeSync: fsWriteSync })
    }
    assert.ok(segmentFiles(wal.dir).length >= 50)
    assert.equal(calls, [])
    await wal.close()
  })

}

test.run()
