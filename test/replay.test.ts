// Replay (lib/replay.ts): no silent gaps, checkpoints that wait for readers, files released
// at close, readable after a write failure, errors that say what is wrong.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError, type Entry } from '../lib/index.js'
import type { Backend } from '../lib/backend.js'
import { BACKENDS, segmentFiles, tmpDir } from './helpers/util.js'

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

async function rejects(p: Promise<unknown>, code: string): Promise<WalError> {
  try {
    await p
  } catch (e) {
    assert.instance(e, WalError)
    assert.is((e as WalError).code, code, (e as Error).message)
    return e as WalError
  }
  throw new assert.Assertion({ message: `expected ${code}, it resolved`, operator: 'rejects' })
}

function throws(fn: () => unknown, code: string): WalError {
  try {
    fn()
  } catch (e) {
    assert.instance(e, WalError)
    assert.is((e as WalError).code, code, (e as Error).message)
    return e as WalError
  }
  throw new assert.Assertion({ message: `expected ${code}, it returned`, operator: 'throws' })
}

/** A closed log of `n` 200-byte puts across 4 KiB segments. */
function writeSegments(backend: string, n: number): string {
  const dir = tmpDir()
  const wal = WriteAheadLog.openSync(dir, { backend: backend as 'js', segmentSize: 4096, preallocate: false })
  for (let i = 1; i <= n; i++) wal.appendSync({ type: 'put', key: `k${i}`, value: 'v'.repeat(200) })
  wal.closeSync()
  return dir
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)
  const opts = { backend, segmentSize: 4096, preallocate: false } as const

  // Issue 9 item 8.
  t('a segment missing in the middle is WAL_CORRUPT naming the segment after the hole', async () => {
    const dir = writeSegments(backend, 80)
    const segs = segmentFiles(dir)
    assert.ok(segs.length >= 4)
    fs.unlinkSync(join(dir, segs[1]))
    const wal = await WriteAheadLog.open(dir, opts)
    const err = await rejects(collect(wal.replay({ from: 0 })), 'WAL_CORRUPT')
    assert.is(err.segment, segs[2])
    throws(() => [...wal.replaySync({ from: 0 })], 'WAL_CORRUPT')
    await wal.close()
  })

  // Issue 9 item 8.
  t('a first segment removed without a checkpoint is WAL_CORRUPT, not a later start', async () => {
    const dir = writeSegments(backend, 80)
    const segs = segmentFiles(dir)
    fs.unlinkSync(join(dir, segs[0]))
    const wal = await WriteAheadLog.open(dir, opts)
    const err = await rejects(collect(wal.replay()), 'WAL_CORRUPT')
    assert.is(err.segment, segs[1])
    await wal.close()
  })

  // Issue 9 item 9.
  t('replay({ from }) below firstLsn after a checkpoint deleted it is WAL_GONE with firstLsn', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, opts)
    for (let i = 1; i <= 80; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v'.repeat(200) })
    assert.is(wal.firstLsn, 1)
    await wal.checkpoint(60)
    assert.ok(wal.firstLsn > 1 && wal.firstLsn <= 61, `firstLsn ${wal.firstLsn}`)
    const err = await rejects(collect(wal.replay({ from: 1 })), 'WAL_GONE')
    assert.is(err.firstLsn, wal.firstLsn)
    throws(() => [...wal.replaySync({ from: 1 })], 'WAL_GONE')
    // From firstLsn itself, and from 0 (everything retained), replay works.
    const retained = await collect(wal.replay({ from: 0 }))
    assert.is(retained[0].lsn, wal.firstLsn)
    assert.is(retained[retained.length - 1].lsn, 80)
    await wal.close()
    const again = await WriteAheadLog.open(dir, { ...opts, readOnly: true })
    assert.is(again.firstLsn, retained[0].lsn)
    await again.close()
  })

  // Issue 9 item 10.
  t('a checkpoint during a replay of the same handle never makes it skip entries', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, opts)
    for (let i = 1; i <= 200; i++) wal.appendSync({ type: 'put', key: `k${i}`, value: 'v'.repeat(100) })
    const it = wal.replay({ from: 1 })
    const seen: number[] = []
    for (let i = 0; i < 42; i++) seen.push(((await it.next()).value as Entry).lsn)
    await wal.checkpoint(190) // frees almost every segment, including the one being read
    for (let r = await it.next(); !r.done; r = await it.next()) seen.push(r.value.lsn)
    assert.equal(seen, Array.from({ length: 200 }, (_, i) => i + 1))
    // Once the reader is done, the freed segments are deleted.
    await wal.checkpoint(195)
    assert.ok(segmentFiles(dir).length <= 2, `${segmentFiles(dir).length} segments left`)
    await wal.close()
  })

  // Issue 9 items 1 and 10: the ordinary consumer loop.
  t('checkpointing a backlog entry by entry keeps the live segment and every later append', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { ...opts, sync: 'always' })
    for (let i = 1; i <= 300; i++) wal.appendSync({ type: 'put', key: `k${i}`, value: 'v' })
    let n = 0
    for await (const e of wal.replay()) {
      await wal.checkpoint(e.lsn)
      n++
    }
    assert.is(n, 300)
    const names = segmentFiles(dir)
    assert.is(new Set(names).size, names.length)
    for (let i = 1; i <= 20; i++) assert.is(await wal.append({ type: 'put', key: `after${i}`, value: 'w' }), 300 + i)
    await wal.close()
    const re = await WriteAheadLog.open(dir, opts)
    assert.is(re.lastLsn, 320)
    assert.is(re.checkpointLsn, 300)
    const keys = (await collect(re.replay())).map((e) => e.key.toString())
    assert.equal(keys, Array.from({ length: 20 }, (_, i) => `after${i + 1}`))
    assert.is(await re.append({ type: 'put', key: 'x', value: 'y' }), 321)
    await re.close()
  })

  // Found by the property test (also on the code before issue 9).
  t('a segment that grows after replay opened it is read to its new end, not taken for a zero tail', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { ...opts, segmentSize: 8192 })
    for (let i = 0; i < 100; i++) wal.appendSync({ type: 'put', key: `u${i}:key`, value: 'x'.repeat((i % 7) * 5) })
    let n = 0
    for await (const e of wal.replay()) {
      await wal.checkpoint(e.lsn) // CHECKPOINT records fill the segment being read
      n++
    }
    assert.is(n, 100)
    assert.is((await collect(wal.replay({ from: 0 }))).length, 0)
    await wal.close()
  })

  // Issue 9 item 12.
  t('close releases the files of iterators abandoned without return()', async () => {
    const dir = writeSegments(backend, 40)
    const wal = await WriteAheadLog.open(dir, opts)
    const before = openFds()
    const its = Array.from({ length: 100 }, () => wal.replay({ from: 0 }))
    for (const it of its) await it.next()
    const sync = Array.from({ length: 20 }, () => wal.replaySync({ from: 0 }))
    for (const it of sync) it.next()
    assert.ok(openFds() >= before + 100)
    await wal.close()
    assert.ok(openFds() <= before - 1, `${openFds()} fds open after close, ${before} with the log open`)
    await rejects(its[0].next(), 'WAL_CLOSED')
    throws(() => sync[0].next(), 'WAL_CLOSED')
  })

  // Found by the property test.
  t('segments an abandoned iterator kept from a checkpoint are deleted by close, not after it', async () => {
    const dir = writeSegments(backend, 100)
    const wal = await WriteAheadLog.open(dir, opts)
    const it = wal.replay()
    await it.next()
    await wal.checkpoint(100)
    assert.ok(segmentFiles(dir).length > 1)
    await wal.close()
    assert.is(segmentFiles(dir).length, 1, 'deleted under the lock, before close resolved')
    const re = await WriteAheadLog.open(dir, opts)
    await new Promise((r) => setTimeout(r, 50)) // nothing of the closed handle runs now
    const retained = await collect(re.replay({ from: 0 }))
    assert.is(retained[0].lsn, re.firstLsn)
    assert.is(retained[retained.length - 1].lsn, 100)
    await re.close()
  })

  // Found in review: a checkpoint in flight when closeSync() runs must not delete anything after.
  t('a checkpoint that resolves after closeSync deletes nothing of the next log in the directory', async () => {
    const dir = tmpDir()
    const o = { ...opts, sync: 'none' } as const
    const wal = WriteAheadLog.openSync(dir, o)
    for (let i = 0; i < 300; i++) wal.appendSync({ type: 'put', key: `k${i}`, value: 'v'.repeat(300) })
    const cp = wal.checkpoint(wal.lastLsn)
    wal.closeSync()
    fs.rmSync(dir, { recursive: true })
    const next = WriteAheadLog.openSync(dir, o)
    for (let i = 0; i < 300; i++) next.appendSync({ type: 'put', key: `n${i}`, value: 'w'.repeat(300) })
    next.closeSync()
    await cp
    await new Promise((r) => setTimeout(r, 50))
    const re = await WriteAheadLog.open(dir, o)
    assert.is((await collect(re.replay({ from: 0 }))).length, 300)
    await re.close()
  })

  // Issue 9 items 17 and 18.
  t('read errors during replay are WalErrors; a foreign file named like a segment says what it is', async () => {
    const dir = writeSegments(backend, 40)
    const segs = segmentFiles(dir)
    const wal = await WriteAheadLog.open(dir, opts)
    // A directory named like a middle segment.
    const mid = segs[1]
    fs.renameSync(join(dir, mid), join(dir, 'moved'))
    fs.mkdirSync(join(dir, mid))
    const err = await rejects(collect(wal.replay({ from: 0 })), 'WAL_IO')
    assert.match(err.message, /replay/)
    // Item 18: the hint fits a read (the log goes on), not a failed write.
    assert.not.match(err.message, /refuses further appends/)
    assert.match(err.message, /log was not changed/)
    fs.rmdirSync(join(dir, mid))
    fs.writeFileSync(join(dir, mid), 'hello, this is not a segment but it is long enough to hold a header')
    const foreign = await rejects(collect(wal.replay({ from: 0 })), 'WAL_CORRUPT')
    assert.is(foreign.segment, mid)
    assert.match(foreign.message, /not a fastwal segment/)
    assert.not.match(foreign.message, /acknowledged as durable/)
    await wal.close()
  })

  // Issue 9 item 19.
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
      await rejects(wal.append({ type: 'put', key: 'lost', value: 'v' }), 'WAL_IO')
    } finally {
      impl.write = write
    }
    await rejects(wal.append({ type: 'put', key: 'later', value: 'v' }), 'WAL_FAILED')
    const keys = (await collect(wal.replay({ from: 0 }))).map((e) => e.key.toString())
    assert.equal(keys, ['k1', 'k2', 'k3', 'k4', 'k5'])
    assert.equal([...wal.replaySync({ from: 0 })].length, 5)
    await wal.close()
  })

  // Issue 9 item 20.
  t('unknown replay options are WAL_INVALID', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), opts)
    throws(() => wal.replay({ from: 1, to: 5 } as never), 'WAL_INVALID')
    throws(() => wal.replayBatches({ form: 1 } as never), 'WAL_INVALID')
    throws(() => wal.replaySync({ from: 1, signal: new AbortController().signal } as never), 'WAL_INVALID')
    await wal.close()
  })

  // Issue 9 item 14.
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
