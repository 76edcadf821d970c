import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError, type Entry, type Operation } from '../lib/index.js'
import { BACKENDS, backendImpl, prng, randomBytes, segmentFiles, tmpDir } from './helpers/util.js'
import { replayEntriesSync } from '../lib/replay.js'

async function collect(it: AsyncIterable<Entry>): Promise<Entry[]> {
  const out: Entry[] = []
  for await (const e of it) out.push(e)
  return out
}

async function rejectsWith(p: Promise<unknown> | (() => unknown), code: string): Promise<WalError> {
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (err) {
    assert.instance(err, WalError)
    assert.is((err as WalError).code, code, (err as Error).message)
    return err as WalError
  }
  throw new assert.Assertion({ message: `expected ${code}`, generated: false, operator: 'rejects' })
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void> | void) => test(`[${backend}] ${name}`, fn)

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

  t('concurrent appends get strictly increasing LSNs in call order, mixed with sync calls', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend })
    const promises: Promise<unknown>[] = []
    const expected: number[] = []
    let syncLsns: number[] = []
    for (let i = 0; i < 300; i++) {
      if (i % 50 === 25) {
        const lsn = wal.appendSync({ type: 'put', key: `s${i}`, value: 'x' })
        syncLsns.push(lsn)
        expected.push(lsn)
        continue
      }
      if (i % 7 === 0) promises.push(wal.appendBatch([{ type: 'put', key: `b${i}`, value: 'x' }, { type: 'del', key: `b${i}` }]))
      else promises.push(wal.append({ type: 'put', key: `k${i}`, value: String(i) }))
    }
    const results = await Promise.all(promises)
    const flat: number[] = []
    for (const r of results) flat.push(typeof r === 'number' ? r : (r as { first: number }).first)
    for (let i = 1; i < flat.length; i++) assert.ok(flat[i] > flat[i - 1], 'async LSNs increase in call order')
    assert.is(wal.durableLsn, wal.lastLsn)
    const keys = (await collect(wal.replay({ from: 0 }))).map((e) => e.key.toString())
    // Replay order is call order: reconstruct it.
    const want: string[] = []
    for (let i = 0; i < 300; i++) {
      if (i % 50 === 25) want.push(`s${i}`)
      else if (i % 7 === 0) want.push(`b${i}`, `b${i}`)
      else want.push(`k${i}`)
    }
    assert.equal(keys, want)
    syncLsns = []
    await wal.close()
  })

  t('segments rotate at segmentSize, a batch never spans segments, replay crosses segments', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize: 4096, preallocate: false })
    const value = 'v'.repeat(200)
    for (let i = 0; i < 40; i++) {
      if (i % 5 === 0) await wal.appendBatch(Array.from({ length: 6 }, (_, j) => ({ type: 'put' as const, key: `b${i}-${j}`, value })))
      else await wal.append({ type: 'put', key: `k${i}`, value })
    }
    const segs = segmentFiles(dir)
    assert.ok(segs.length >= 4, `rotated into ${segs.length} segments`)
    for (const s of segs.slice(0, -1)) assert.ok(fs.statSync(join(dir, s)).size <= 4096, `${s} within segmentSize`)
    const batches = []
    for await (const b of wal.replayBatches({ from: 0 })) batches.push(b)
    assert.is(batches.reduce((n, b) => n + b.entries.length, 0), 32 + 8 * 6)
    assert.ok(batches.filter((b) => b.entries.length === 6).length === 8)
    // A batch larger than a whole segment still goes in one (oversized) segment.
    const huge = await wal.appendBatch(Array.from({ length: 30 }, (_, j) => ({ type: 'put' as const, key: `h${j}`, value })))
    const got = (await collect(wal.replay({ from: huge.first }))).map((e) => e.lsn)
    assert.equal(got, Array.from({ length: 30 }, (_, j) => huge.first + j))
    await wal.close()
    const r = await WriteAheadLog.open(dir, { backend, segmentSize: 4096, preallocate: false })
    assert.is((await collect(r.replay({ from: 0 }))).length, 32 + 8 * 6 + 30)
    await r.close()
  })

  t('replay from skips whole segments before from without reading them', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize: 4096, preallocate: false })
    for (let i = 0; i < 100; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(100) })
    await wal.close()
    // Damage the first segment: a replay that starts after it must not notice.
    const first = join(dir, segmentFiles(dir)[0])
    const bytes = fs.readFileSync(first)
    bytes[100] ^= 0xff
    fs.writeFileSync(first, bytes)
    const r = await WriteAheadLog.open(dir, { backend, segmentSize: 4096, preallocate: false })
    assert.equal((await collect(r.replay({ from: 90 }))).map((e) => e.lsn), Array.from({ length: 11 }, (_, i) => 90 + i))
    const err = await rejectsWith(collect(r.replay({ from: 0 })), 'WAL_CORRUPT')
    assert.is(err.segment, segmentFiles(dir)[0])
    assert.is(typeof err.offset, 'number')
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

  t('the seed bug: a batch cut before its COMMIT is never replayed; earlier records survive', async () => {
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

  t('preallocated segments have a zero tail that every mode, strict included, accepts', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize: 1 << 20 })
    await wal.append({ type: 'put', key: 'a', value: 'b' })
    await wal.close()
    assert.is(fs.statSync(join(dir, segmentFiles(dir)[0])).size, 1 << 20)
    for (const recovery of ['strict', 'point-in-time', 'tolerate-tail'] as const) {
      const r = await WriteAheadLog.open(dir, { backend, recovery, segmentSize: 1 << 20 })
      assert.is((await collect(r.replay())).length, 1)
      assert.is(r.recovery.truncatedBytes, 0)
      await r.close()
    }
    const exact = await WriteAheadLog.open(dir, { backend, preallocate: false })
    await exact.close()
    assert.is(fs.statSync(join(dir, segmentFiles(dir)[0])).size, 32 + 32 + 2, 'preallocate:false leaves exactly header + records')
  })

  t('preallocated rotation: zero-filled spares become segments; old ones end at their last record', async () => {
    const dir = tmpDir()
    const segmentSize = 64 * 1024
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize })
    const value = 'p'.repeat(1000)
    for (let i = 0; i < 300; i++) {
      await wal.append({ type: 'put', key: `k${i}`, value })
      if (i % 40 === 0) await new Promise((r) => setImmediate(r)) // let the spare's zero fill finish
    }
    await wal.close()
    const files = fs.readdirSync(dir).sort()
    assert.not.ok(files.some((f) => f.startsWith('prealloc')), 'spare removed at close')
    const segs = segmentFiles(dir)
    assert.ok(segs.length >= 4)
    for (const sname of segs.slice(0, -1)) {
      const bytes = fs.readFileSync(join(dir, sname))
      const scan = backendImpl(backend).scan(bytes, 32, bytes.length)
      assert.ok(bytes.length < segmentSize, `${sname} truncated`)
      assert.is(scan.status, 0, `${sname} is whole records to its end`)
      assert.is(scan.stop, bytes.length)
    }
    assert.is(fs.statSync(join(dir, segs[segs.length - 1])).size, segmentSize)
    const r = await WriteAheadLog.open(dir, { backend, segmentSize, recovery: 'strict' })
    assert.is((await collect(r.replay({ from: 0 }))).length, 300)
    await r.close()
  })

  t('a writer closed while its spare is being zero-filled never disturbs the next writer', async () => {
    const dir = tmpDir()
    const segmentSize = 32 * 1024
    const value = 'q'.repeat(600)
    for (let round = 0; round < 6; round++) {
      const a = await WriteAheadLog.open(dir, { backend, segmentSize })
      // Past half the segment: the next segment's zero fill starts on the thread pool.
      for (let i = 0; i < 30; i++) a.appendSync({ type: 'put', key: `a${round}-${i}`, value })
      await a.close() // while that fill may still be running
      const b = await WriteAheadLog.open(dir, { backend, segmentSize })
      for (let i = 0; i < 120; i++) await b.append({ type: 'put', key: `b${round}-${i}`, value }) // rotates
      await b.close()
    }
    const r = WriteAheadLog.openSync(dir, { backend, segmentSize, recovery: 'strict' })
    assert.is([...r.replaySync({ from: 0 })].length, 6 * 150)
    r.closeSync()
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
}

test('both backends write byte-identical files and read each other', async () => {
  const dirs: Record<string, string> = {}
  for (const backend of BACKENDS) {
    const dir = tmpDir(`ident-${backend}`)
    dirs[backend] = dir
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize: 8192 })
    const rand = prng(99)
    for (let i = 0; i < 200; i++) {
      if (i % 9 === 0) await wal.appendBatch([{ type: 'put', key: randomBytes(rand, 5), value: randomBytes(rand, 90) }, { type: 'del', key: `d${i}` }])
      else if (i % 5 === 0) wal.appendSync({ type: 'put', key: `s${i}`, value: randomBytes(rand, rand() % 300) })
      else await wal.append({ type: 'put', key: `k${i}`, value: randomBytes(rand, rand() % 300) })
      if (i === 150) await wal.checkpoint(100)
    }
    await wal.close()
  }
  const names = segmentFiles(dirs.native)
  assert.equal(names, segmentFiles(dirs.js))
  for (const n of names) {
    const a = fs.readFileSync(join(dirs.native, n))
    const b = fs.readFileSync(join(dirs.js, n))
    let at = 0
    while (at < Math.min(a.length, b.length) && a[at] === b[at]) at++
    assert.ok(a.equals(b), `${n} differs at byte ${at} (sizes ${a.length}/${b.length})`)
  }
  // Cross-read: each backend opens the other's directory.
  const seen: string[][] = []
  for (const [reader, writer] of [['native', 'js'], ['js', 'native']] as const) {
    const wal = await WriteAheadLog.open(dirs[writer], { backend: reader, segmentSize: 8192 })
    assert.is(wal.checkpointLsn, 100)
    const entries = await collect(wal.replay({ from: 0 }))
    assert.ok(entries.length > 0 && entries[entries.length - 1].lsn === wal.lastLsn)
    seen.push(entries.map((e) => `${e.lsn}:${e.type}:${e.key.toString('hex')}:${e.value?.toString('hex')}`))
    const lsn = await wal.append({ type: 'put', key: 'cross', value: reader })
    await wal.close()
    const back = WriteAheadLog.openSync(dirs[writer], { backend: writer })
    assert.is([...back.replaySync({ from: lsn })][0].value!.toString(), reader)
    back.closeSync()
  }
  assert.equal(seen[0], seen[1])
})

test.run()
