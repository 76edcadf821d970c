// The facade (lib/wal.ts): the public API end to end on both backends (round trips, batches,
// checkpoints, errors and closed or readOnly handles), argument checks that belong to it
// (LSN exhaustion, replay options), and what it coordinates: a checkpoint never deletes a
// segment an unfinished iterator of the same handle still has to read, close releases every
// file of the handle, and a closed handle deletes nothing afterwards.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError, type Entry, type Operation } from '../lib/index.js'
import type { Backend } from '../lib/backend.js'
import { crc32cJs } from '../lib/crc32c.js'
import { MAX_LSN, encodeSegmentHeader, segmentName } from '../lib/format.js'
import { BACKENDS, backendImpl, prng, randomBytes, segmentFiles, tmpDir } from './helpers/util.js'
import { replayEntriesSync } from '../lib/replay.js'
import { code, codeOf, collect, rejectsWith, throws, writeSegments } from './helpers/wal.js'

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length
}

type Patchable = { -readonly [K in keyof Backend]: Backend[K] }
function impl(wal: WriteAheadLog): Patchable {
  return (wal as unknown as { impl: Patchable }).impl
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void> | void) => test(`[${backend}] ${name}`, fn)
  const opts = { backend, segmentSize: 4096, preallocate: false } as const

  t('round trip of every op type, empty and binary keys/values, multi-MiB values', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend })
    assert.is(wal.backend, backend)
    const big = randomBytes(prng(5), 3 * 1024 * 1024 + 17)
    const bin = Buffer.from([0, 255, 1, 0, 128])
    const ops: Operation[] = [
      { type: 'put', key: 'k', value: 'v' },
      { type: 'put', key: '', value: '' },
      { type: 'put', key: bin, value: bin },
      { type: 'del', key: 'k' },
      { type: 'del', key: '' },
      { type: 'put', key: 'big', value: big },
      { type: 'put', key: 'ünï', value: 'çødé ✓' },
    ]
    const lsns: number[] = []
    for (const op of ops) lsns.push(await wal.append(op))
    assert.equal(lsns, [1, 2, 3, 4, 5, 6, 7])
    assert.is(wal.lastLsn, 7)
    assert.is(wal.durableLsn, 7)
    const check = (got: Entry[]) => {
      assert.is(got.length, ops.length)
      got.forEach((e, i) => {
        const op = ops[i]
        assert.is(e.lsn, i + 1)
        assert.is(e.type, op.type)
        assert.ok(e.key.equals(Buffer.from(op.key as string)), `key ${i}`)
        if (op.type === 'put') assert.ok(e.value!.equals(Buffer.from(op.value as string)), `value ${i}`)
        else assert.is(e.value, undefined)
      })
    }
    check(await collect(wal.replay({ from: 0 })))
    check([...wal.replaySync({ from: 0 })])
    await wal.close()
    const again = WriteAheadLog.openSync(dir, { backend })
    check([...again.replaySync()])
    assert.is(again.lastLsn, 7)
    again.closeSync()
  })

  t('batches get consecutive LSNs; replayBatches yields them whole; from filters', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend })
    await wal.append({ type: 'put', key: 'a', value: '1' })
    const b = await wal.appendBatch([
      { type: 'put', key: 'x', value: '1' },
      { type: 'del', key: 'y' },
      { type: 'put', key: 'z', value: '3' },
    ])
    assert.equal(b, { first: 2, last: 4 })
    const s = wal.appendBatchSync([{ type: 'put', key: 'q', value: 'q' }])
    assert.equal(s, { first: 5, last: 5 })
    const batches = []
    for await (const batch of wal.replayBatches({ from: 0 })) batches.push(batch)
    assert.equal(batches.map((x) => [x.first, x.last, x.entries.length]), [[1, 1, 1], [2, 4, 3], [5, 5, 1]])
    const from3 = []
    for await (const batch of wal.replayBatches({ from: 3 })) from3.push(batch.first)
    assert.equal(from3, [2, 5], 'a batch whose last >= from is yielded whole')
    assert.equal((await collect(wal.replay({ from: 3 }))).map((e) => e.lsn), [3, 4, 5])
    await wal.close()
  })

  t('a batch cut before its COMMIT is never replayed; earlier records survive', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, preallocate: false })
    await wal.append({ type: 'put', key: 'before-1', value: 'a' })
    await wal.append({ type: 'put', key: 'before-2', value: 'b' })
    const sizeBefore = fs.statSync(join(dir, segmentFiles(dir)[0])).size
    await wal.appendBatch([
      { type: 'put', key: 'from', value: '-100' },
      { type: 'put', key: 'to', value: '+100' },
      { type: 'put', key: 'fee', value: '1' },
    ])
    await wal.close()
    const seg = join(dir, segmentFiles(dir)[0])
    const full = fs.statSync(seg).size
    // Cut at every offset inside the batch: after the BEGIN, inside PUTs, inside COMMIT.
    for (let cut = sizeBefore + 1; cut < full; cut += 7) {
      const copy = tmpDir('cut')
      fs.mkdirSync(copy)
      fs.copyFileSync(seg, join(copy, segmentFiles(dir)[0]))
      fs.truncateSync(join(copy, segmentFiles(dir)[0]), cut)
      for (const readOnly of [true, false]) {
        const r = await WriteAheadLog.open(copy, { backend, readOnly, preallocate: false })
        const keys = (await collect(r.replay({ from: 0 }))).map((e) => e.key.toString())
        assert.equal(keys, ['before-1', 'before-2'], `cut at ${cut} (readOnly ${readOnly})`)
        if (!readOnly) {
          // Once the BEGIN record is whole, the dropped batch is recognisable and counted.
          assert.is(r.recovery.droppedBatches, cut >= sizeBefore + 32 ? 1 : 0, `cut at ${cut}`)
          assert.ok(r.recovery.truncatedBytes > 0)
        }
        await r.close()
      }
    }
    // The same file given straight to replay, with no recovery in front of it: cuts at the
    // record boundaries inside the batch leave BEGIN and whole PUTs without a COMMIT.
    const impl = backendImpl(backend)
    for (let cut = sizeBefore + 32; cut < full - 40; cut += 0) {
      const copy = tmpDir('raw')
      fs.mkdirSync(copy)
      const name = segmentFiles(dir)[0]
      fs.copyFileSync(seg, join(copy, name))
      fs.truncateSync(join(copy, name), cut)
      const src = { dir: copy, backend: impl, segments: () => [{ name, firstLsn: 1 }], limitFor: () => -1, checkpointLsn: () => 0, firstLsn: () => 1, track: () => () => {} }
      const keys = [...replayEntriesSync(src, 0)].map((e) => e.key.toString())
      assert.equal(keys, ['before-1', 'before-2'], `raw replay, cut at record boundary ${cut}`)
      const scan = impl.scan(fs.readFileSync(seg), cut, full)
      cut += 32 + scan.index[1] // next record boundary
    }
  })

  t('a BEGIN whose COMMIT is missing, followed by valid records: orphan dropped, the rest kept', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, preallocate: false })
    await wal.append({ type: 'put', key: 'first', value: '1' })
    const batchStart = fs.statSync(join(dir, segmentFiles(dir)[0])).size
    await wal.appendBatch([
      { type: 'put', key: 'orphan-1', value: 'x' },
      { type: 'put', key: 'orphan-2', value: 'y' },
    ])
    const commitEnd = fs.statSync(join(dir, segmentFiles(dir)[0])).size
    await wal.append({ type: 'put', key: 'after-1', value: '2' })
    await wal.appendBatch([{ type: 'put', key: 'after-batch', value: '3' }])
    await wal.append({ type: 'del', key: 'after-2' })
    await wal.close()
    const seg = join(dir, segmentFiles(dir)[0])
    const bytes = fs.readFileSync(seg)
    // Splice out the COMMIT record (32-byte header + 8-byte payload): every other record stays valid.
    const spliced = Buffer.concat([bytes.subarray(0, commitEnd - 40), bytes.subarray(commitEnd)])
    fs.writeFileSync(seg, spliced)
    assert.ok(batchStart < commitEnd - 40)
    const r = await WriteAheadLog.open(dir, { backend, preallocate: false })
    const keys = (await collect(r.replay({ from: 0 }))).map((e) => e.key.toString())
    assert.equal(keys, ['first', 'after-1', 'after-batch', 'after-2'])
    const batches = []
    for (const e of r.replaySync({ from: 0 })) batches.push(e.lsn)
    assert.equal(batches, [1, 4, 5, 6])
    await r.close()
  })

  t('checkpoint deletes whole segments, defaults replay after it, survives reopen', async () => {
    const dir = tmpDir()
    const opts = { backend, segmentSize: 4096, preallocate: false } as const
    const wal = await WriteAheadLog.open(dir, opts)
    for (let i = 1; i <= 120; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(100) })
    const before = segmentFiles(dir)
    await wal.checkpoint(70)
    assert.is(wal.checkpointLsn, 70)
    const after = segmentFiles(dir)
    assert.ok(after.length < before.length, 'segments were deleted')
    // Every deleted segment held only LSNs <= 70; every kept one may hold LSN > 70 or 71.
    for (const s of before.filter((x) => !after.includes(x))) {
      const next = before[before.indexOf(s) + 1]
      assert.ok(Number(next.slice(0, 20)) - 1 <= 70)
    }
    assert.equal((await collect(wal.replay())).map((e) => e.lsn)[0], 71)
    await rejectsWith(wal.checkpoint(121), 'WAL_INVALID')
    await wal.close()
    const again = await WriteAheadLog.open(dir, opts)
    assert.is(again.checkpointLsn, 70)
    assert.is((await collect(again.replay()))[0].lsn, 71)
    // After more rotations the checkpoint still survives (segment headers carry it).
    for (let i = 0; i < 100; i++) await again.append({ type: 'put', key: 'more', value: 'x'.repeat(100) })
    await again.close()
    const third = await WriteAheadLog.open(dir, opts)
    assert.is(third.checkpointLsn, 70)
    await third.close()
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

  // A checkpoint never deletes a segment that an unfinished iterator of the same handle
  // still has to read; the segment goes once the iterator has passed it.
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

  // A checkpoint still in flight when closeSync() runs deletes nothing once the handle is
  // closed: by then the directory may hold another log.
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

  t('errors: invalid input, too large, closed, read-only; rejected calls consume no LSN', async () => {
    const parent = tmpDir('parent')
    const dir = join(parent, 'a', 'b')
    for (const bad of [{ sync: 'sometimes' }, { segmentSize: 100 }, { maxRecordSize: -1 }, { recovery: 'yolo' }, { nope: 1 }, { backend: 'rust' }]) {
      await rejectsWith(WriteAheadLog.open(dir, { backend, ...(bad as object) }), 'WAL_INVALID')
      assert.not.ok(fs.existsSync(parent), 'nothing created on disk for invalid options')
    }
    const wal = await WriteAheadLog.open(dir, { backend, maxRecordSize: 10 })
    assert.ok(fs.existsSync(join(dir, 'LOCK')), 'parents created, LOCK inside')
    await rejectsWith(wal.append({ type: 'put', key: 'k', value: 'x'.repeat(10) }), 'WAL_TOO_LARGE')
    await wal.append({ type: 'put', key: 'k', value: 'x'.repeat(9) }) // 10 bytes: inclusive
    await rejectsWith(wal.append({ type: 'del', key: 'k'.repeat(11) }), 'WAL_TOO_LARGE')
    await rejectsWith(wal.append({ type: 'put', key: 'k' } as unknown as Operation), 'WAL_INVALID')
    await rejectsWith(wal.append({ type: 'upsert', key: 'k', value: 'v' } as unknown as Operation), 'WAL_INVALID')
    await rejectsWith(wal.append(null as unknown as Operation), 'WAL_INVALID')
    await rejectsWith(wal.appendBatch([]), 'WAL_INVALID')
    await rejectsWith(wal.appendBatch([{ type: 'put', key: 'a', value: 'b' }, { type: 'put', key: 1 } as unknown as Operation]), 'WAL_INVALID')
    await rejectsWith(() => wal.appendSync({ type: 'put', key: 'k', value: 'x'.repeat(50) }), 'WAL_TOO_LARGE')
    await rejectsWith(wal.checkpoint(-1), 'WAL_INVALID')
    await rejectsWith(() => wal.replay({ from: -3 }), 'WAL_INVALID')
    assert.is(await wal.append({ type: 'put', key: 'k', value: 'ok' }), 2, 'rejected calls consumed no LSN')
    assert.equal([...wal.replaySync({ from: 0 })].map((e) => e.lsn), [1, 2], 'nothing partial reached disk')
    await wal.close()
    await wal.close() // idempotent
    wal.closeSync()
    await rejectsWith(wal.append({ type: 'put', key: 'k', value: 'v' }), 'WAL_CLOSED')
    await rejectsWith(wal.appendBatch([{ type: 'put', key: 'k', value: 'v' }]), 'WAL_CLOSED')
    await rejectsWith(() => wal.appendSync({ type: 'put', key: 'k', value: 'v' }), 'WAL_CLOSED')
    await rejectsWith(wal.sync(), 'WAL_CLOSED')
    await rejectsWith(wal.checkpoint(1), 'WAL_CLOSED')
    await rejectsWith(() => wal.replay(), 'WAL_CLOSED')
    await rejectsWith(() => wal.replaySync(), 'WAL_CLOSED')

    const ro = await WriteAheadLog.open(dir, { backend, readOnly: true })
    assert.is(ro.lastLsn, 2)
    await rejectsWith(ro.append({ type: 'put', key: 'k', value: 'v' }), 'WAL_READ_ONLY')
    await rejectsWith(() => ro.appendSync({ type: 'put', key: 'k', value: 'v' }), 'WAL_READ_ONLY')
    await rejectsWith(ro.sync(), 'WAL_READ_ONLY')
    await rejectsWith(ro.checkpoint(1), 'WAL_READ_ONLY')
    assert.is((await collect(ro.replay())).length, 2)
    await ro.close()
  })

  // LSNs are exact JavaScript integers: a call that would pass 2^53 - 1 is refused whole.
  t('append at LSN exhaustion is WAL_INVALID and consumes nothing', async () => {
    const dir = tmpDir()
    fs.mkdirSync(dir)
    // A log whose last LSN is 2^53 - 2: an empty segment named just above it.
    const prev = MAX_LSN - 1
    fs.writeFileSync(join(dir, segmentName(prev + 1)), encodeSegmentHeader({ prevLsn: prev, checkpointLsn: prev }, crc32cJs))
    const wal = await WriteAheadLog.open(dir, { backend, preallocate: false })
    assert.is(wal.lastLsn, prev)
    assert.is(code(() => wal.appendBatchSync([{ type: 'put', key: 'a', value: '' }, { type: 'put', key: 'b', value: '' }])), 'WAL_INVALID')
    assert.is(await wal.append({ type: 'put', key: 'last', value: '' }), MAX_LSN)
    assert.is(await codeOf(wal.append({ type: 'put', key: 'past', value: '' })), 'WAL_INVALID')
    assert.is(code(() => wal.appendSync({ type: 'put', key: 'past', value: '' })), 'WAL_INVALID')
    assert.is(wal.lastLsn, MAX_LSN)
    await wal.close()
    const re = await WriteAheadLog.open(dir, { backend, readOnly: true })
    assert.equal([...re.replaySync({ from: 0 })].map((e) => e.lsn), [MAX_LSN])
    await re.close()
  })

  // Replay options are checked like open's: an unknown one is refused, not ignored.
  t('unknown replay options are WAL_INVALID', async () => {
    const wal = await WriteAheadLog.open(tmpDir(), opts)
    throws(() => wal.replay({ from: 1, to: 5 } as never), 'WAL_INVALID')
    throws(() => wal.replayBatches({ form: 1 } as never), 'WAL_INVALID')
    throws(() => wal.replaySync({ from: 1, signal: new AbortController().signal } as never), 'WAL_INVALID')
    await wal.close()
  })

  // close() resolves unless its own final write or sync fails (never retried); it releases
  // the lock either way.
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

  // close() releases every file the handle opened, those of iterators abandoned half-way
  // included; their next call gives WAL_CLOSED.
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
    await rejectsWith(its[0].next(), 'WAL_CLOSED')
    throws(() => sync[0].next(), 'WAL_CLOSED')
  })

  // Segments an iterator kept from a checkpoint are deleted by close() under the lock,
  // before it resolves: nothing of a closed handle touches the directory afterwards.
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

  t('await using closes the log', async () => {
    const dir = tmpDir()
    {
      await using wal = await WriteAheadLog.open(dir, { backend })
      await wal.append({ type: 'put', key: 'k', value: 'v' })
    }
    const again = await WriteAheadLog.open(dir, { backend }) // would be WAL_LOCKED if not closed
    assert.is(again.lastLsn, 1)
    await again.close()
  })
}

test.run()
