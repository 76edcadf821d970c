// The commit queue (lib/commit-queue.ts): staged bytes go to disk in call order, one
// positional write (+ fdatasync) at a time on the thread pool; appends that arrive
// meanwhile share the next write. A segment the writer rotated away from stays limited, for
// readers, to what has been written while writes for it are queued or in flight. Nothing
// blocks the event loop. After a failed write or sync nothing more is acknowledged, on
// either path. Some tests patch the backend object the log uses (restored afterwards) to
// hold a thread-pool write back or fail a sync at a chosen moment.
import * as fs from 'node:fs'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError } from '../lib/index.js'
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

  // Creating a segment and shrinking a finished one run on the thread pool, as the first
  // steps of the write that needs them: asynchronous appends never block the event loop.
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

  t('sync modes: none and interval append and replay; sync() makes everything durable', async () => {
    for (const sync of ['none', 'interval'] as const) {
      const dir = tmpDir()
      const wal = await WriteAheadLog.open(dir, { backend, sync, syncIntervalMs: 5 })
      for (let i = 0; i < 1000; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v' })
      for (let i = 0; i < 1000; i++) wal.appendSync({ type: 'put', key: `s${i}`, value: 'v' })
      assert.is(wal.lastLsn, 2000)
      assert.is([...wal.replaySync({ from: 0 })].length, 2000)
      if (sync === 'interval') {
        await new Promise((r) => setTimeout(r, 40))
        assert.is(wal.durableLsn, 2000, 'interval timer synced')
      }
      await wal.sync()
      assert.is(wal.durableLsn, wal.lastLsn)
      await wal.close()
      const r = WriteAheadLog.openSync(dir, { backend })
      assert.is([...r.replaySync({ from: 0 })].length, 2000)
      r.closeSync()
    }
  })
}

test.run()
