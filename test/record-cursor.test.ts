// The record cursor (lib/record-cursor.ts) applies the log's rules to records in file
// order: LSNs never go backwards, a batch is emitted only whole and only with a COMMIT
// that matches its BEGIN, and the positions recovery needs (where the kept records end,
// where an open batch began) follow from what it consumed. Records are built with the
// pure-TS encoders and indexed with the pure-TS scanner; the cursor itself has no backend.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { crc32cJs } from '../lib/crc32c.js'
import { IX_STRIDE, RECORD_HEADER_SIZE as H, SCAN_END, TYPE_DEL, TYPE_PUT } from '../lib/format.js'
import { jsBackend } from '../lib/js-backend.js'
import { RecordCursor, countDropped, noneDropped, type Batch, type CursorOutput, type Entry } from '../lib/record-cursor.js'

const js = jsBackend

type Op = { type: 'put'; key: string; value: string } | { type: 'del'; key: string }

/** Appends records to a growing buffer and remembers where each one starts. */
class Log {
  buf = Buffer.alloc(64 * 1024)
  end = 0
  /** Start offset of every record, in order. */
  starts: number[] = []

  put(lsn: number, key: string, value: string, mark = 0): this {
    return this.add(() => js.encodeRecord(this.buf, this.end, TYPE_PUT, lsn, mark, Buffer.from(key), Buffer.from(value)))
  }

  del(lsn: number, key: string, mark = 0): this {
    return this.add(() => js.encodeRecord(this.buf, this.end, TYPE_DEL, lsn, mark, Buffer.from(key), undefined))
  }

  /** BEGIN, one record per op, COMMIT. */
  batch(first: number, ops: Op[], mark = 0): this {
    const start = this.end
    const types = Uint8Array.from(ops.map((o) => (o.type === 'put' ? TYPE_PUT : TYPE_DEL)))
    const keys = ops.map((o) => Buffer.from(o.key))
    const values = ops.map((o) => (o.type === 'put' ? Buffer.from(o.value) : undefined))
    this.end = js.encodeBatch(this.buf, this.end, types, keys, values, first, mark)
    // Record starts inside the batch, from the scanner's own index.
    const ix = js.scan(this.buf, start, this.end).index
    for (let i = 0; i < ix.length; i += IX_STRIDE) this.starts.push(ix[i])
    return this
  }

  checkpoint(lsn: number, checkpointLsn: number, mark = 0): this {
    return this.add(() => js.encodeCheckpoint(this.buf, this.end, lsn, mark, checkpointLsn))
  }

  /** Removes record k (by its index in `starts`), as if it had never been written. */
  drop(k: number): this {
    const s = this.starts[k]
    const e = k + 1 < this.starts.length ? this.starts[k + 1] : this.end
    this.buf.copy(this.buf, s, e, this.end)
    this.end -= e - s
    this.starts.splice(k, 1)
    for (let i = k; i < this.starts.length; i++) this.starts[i] -= e - s
    return this
  }

  /** Rewrites bytes of record k (at `off` from its start) and seals its checksum again. */
  patch(k: number, off: number, bytes: number[]): this {
    const s = this.starts[k]
    const e = k + 1 < this.starts.length ? this.starts[k + 1] : this.end
    this.buf.set(bytes, s + off)
    this.buf.writeUInt32LE(crc32cJs(this.buf.subarray(s + 4, e)), s)
    return this
  }

  /** The bytes written, and the scanner's index of them (every record must be valid). */
  scan(): { buf: Buffer; ix: Float64Array } {
    const buf = this.buf.subarray(0, this.end)
    const r = js.scan(buf, 0, buf.length)
    assert.is(r.status, SCAN_END, 'the records built are valid')
    assert.is(r.stop, buf.length)
    return { buf, ix: r.index }
  }

  private add(encode: () => number): this {
    this.starts.push(this.end)
    this.end = encode()
    return this
  }
}

/** A cursor that starts at `base` after `prevLsn`, and what it emits. */
function cursor(opts: { prevLsn?: number; checkpointLsn?: number; base?: number; from?: number; asBatches?: boolean } = {}) {
  const out: CursorOutput = { from: opts.from ?? 0, asBatches: opts.asBatches ?? false, items: [] }
  const c = new RecordCursor(opts.prevLsn ?? 0, opts.checkpointLsn ?? 0, opts.base ?? 0, out)
  return { c, out }
}

const lsns = (items: (Entry | Batch)[]) => items.map((x) => ('entries' in x ? [x.first, x.last, x.entries.map((e) => e.lsn)] : x.lsn))

test('a committed batch is emitted whole, or flattened into its entries; from filters entries and batches by their last LSN', () => {
  const log = new Log()
    .put(1, 'a', 'one')
    .batch(2, [
      { type: 'put', key: 'x', value: 'ex' },
      { type: 'del', key: 'y' },
      { type: 'put', key: 'z', value: '' },
    ])
    .del(5, 'a')
  const { buf, ix } = log.scan()

  const whole = cursor({ asBatches: true })
  assert.is(whole.c.consume(buf, ix, 0), -1)
  assert.equal(lsns(whole.out.items), [[1, 1, [1]], [2, 4, [2, 3, 4]], [5, 5, [5]]])
  const b = whole.out.items[1] as Batch
  assert.equal(
    b.entries.map((e) => [e.type, e.key.toString(), e.value?.toString()]),
    [
      ['put', 'x', 'ex'],
      ['del', 'y', undefined],
      ['put', 'z', ''],
    ],
  )
  assert.is(whole.c.keptLsn, 5)
  assert.is(whole.c.end, buf.length)
  assert.is(whole.c.batchStart, -1)
  assert.is(whole.c.orphans, 0)

  const flat = cursor()
  flat.c.consume(buf, ix, 0)
  assert.equal(lsns(flat.out.items), [1, 2, 3, 4, 5])

  // from: entries below it are consumed but not emitted; a batch whose last LSN reaches
  // from is emitted whole, with its earlier members.
  const from3 = cursor({ from: 3 })
  from3.c.consume(buf, ix, 0)
  assert.equal(lsns(from3.out.items), [3, 4, 5])
  const batches3 = cursor({ from: 3, asBatches: true })
  batches3.c.consume(buf, ix, 0)
  assert.equal(lsns(batches3.out.items), [[2, 4, [2, 3, 4]], [5, 5, [5]]])
  const batches5 = cursor({ from: 5, asBatches: true })
  batches5.c.consume(buf, ix, 0)
  assert.equal(lsns(batches5.out.items), [[5, 5, [5]]])
  assert.is(batches5.c.keptLsn, 5, 'what is filtered out is still consumed')
})

test('a batch without its COMMIT is not emitted; batchStart and lsnBeforeBatch say where it began', () => {
  const log = new Log()
    .put(1, 'a', '1')
    .put(2, 'b', '2')
    .batch(3, [
      { type: 'put', key: 'x', value: '1' },
      { type: 'put', key: 'y', value: '2' },
    ])
  const begin = log.starts[2]
  log.drop(log.starts.length - 1) // the COMMIT never reached the disk
  const { buf, ix } = log.scan()
  for (const asBatches of [false, true]) {
    const base = 4096 // the chunk starts at this file offset
    const { c, out } = cursor({ asBatches, base })
    assert.is(c.consume(buf, ix, base), -1)
    assert.equal(lsns(out.items), asBatches ? [[1, 1, [1]], [2, 2, [2]]] : [1, 2])
    assert.is(c.batchStart, base + begin, 'file offset of the BEGIN')
    assert.is(c.lsnBeforeBatch, 2)
    assert.is(c.keptLsn, 2, 'the open batch is not kept')
    assert.is(c.maxLsn, 4, 'its members were seen')
    assert.is(c.end, base + buf.length, 'every record was consumed')
  }
})

test('a COMMIT that names another BEGIN LSN or count makes the batch an orphan: nothing emitted, keptLsn moves past it', () => {
  const ops: Op[] = [
    { type: 'put', key: 'x', value: '1' },
    { type: 'put', key: 'y', value: '2' },
  ]
  const commit = 1 + 1 + 2 // record index of the COMMIT: put, BEGIN, 2 members
  const cases: [string, (l: Log) => Log][] = [
    ['BEGIN LSN', (l) => l.patch(commit, H, [1, 0, 0, 0, 0, 0, 0, 0])], // payload: the BEGIN's LSN, 2 -> 1
    ['count', (l) => l.patch(commit, 12, [3, 0, 0, 0])], // aux: the operation count, 2 -> 3
  ]
  for (const [what, damage] of cases) {
    const log = damage(new Log().put(1, 'a', '1').batch(2, ops)).put(4, 'b', '4')
    const { buf, ix } = log.scan()
    for (const asBatches of [false, true]) {
      const { c, out } = cursor({ asBatches })
      assert.is(c.consume(buf, ix, 0), -1, what)
      assert.equal(lsns(out.items), asBatches ? [[1, 1, [1]], [4, 4, [4]]] : [1, 4], `${what}: the batch is not emitted`)
      assert.is(c.orphans, 1, `${what}: one orphan`)
      assert.is(c.batchStart, -1, `${what}: the COMMIT closed the batch`)
      assert.is(c.keptLsn, 4)
    }
    // Right after the COMMIT, keptLsn is already past the orphan.
    const { c } = cursor()
    c.consume(buf, ix, 0, 0, (commit + 1) * IX_STRIDE)
    assert.is(c.keptLsn, 3, `${what}: keptLsn is the COMMIT's LSN`)
    assert.is(c.end, log.starts[commit + 1], `${what}: end is after the COMMIT`)
  }
})

test('a batch member out of sequence discards the batch: nothing of it is emitted', () => {
  const ops: Op[] = [
    { type: 'put', key: 'x', value: '1' },
    { type: 'put', key: 'x', value: '1' },
    { type: 'put', key: 'x', value: '1' },
  ]
  // A member missing: members 2, 4 follow the BEGIN, then the COMMIT.
  const missing = new Log().put(1, 'a', '1').batch(2, ops).drop(3).put(5, 'b', '5')
  // A member repeating the LSN before it (2, 2, 4): the count still matches the COMMIT's.
  const repeated = new Log().put(1, 'a', '1').batch(2, ops).patch(3, 16, [2, 0, 0, 0, 0, 0, 0, 0]).put(5, 'b', '5')
  for (const [what, log] of [['missing', missing], ['repeated', repeated]] as const) {
    const { buf, ix } = log.scan()
    for (const asBatches of [false, true]) {
      const { c, out } = cursor({ asBatches })
      assert.is(c.consume(buf, ix, 0), -1, what)
      assert.equal(lsns(out.items), asBatches ? [[1, 1, [1]], [5, 5, [5]]] : [1, 5], `${what}: the batch is not emitted`)
      assert.ok(c.orphans >= 1, `${what}: the batch is counted as an orphan`)
      assert.is(c.batchStart, -1)
      assert.is(c.keptLsn, 5)
    }
  }
})

test('a standalone record inside an open batch discards the batch and is itself kept', () => {
  const log = new Log().put(1, 'a', '1').batch(2, [
    { type: 'put', key: 'x', value: '1' },
    { type: 'put', key: 'y', value: '2' },
  ])
  log.drop(4).drop(3) // BEGIN and the first member remain
  log.put(3, 'b', 'standalone')
  const { buf, ix } = log.scan()
  const { c, out } = cursor()
  assert.is(c.consume(buf, ix, 0), -1)
  assert.equal(lsns(out.items), [1, 3])
  assert.is((out.items[1] as Entry).key.toString(), 'b')
  assert.is(c.orphans, 1)
  assert.is(c.batchStart, -1, 'no batch is open any more')
  assert.is(c.keptLsn, 3)
})

test('a CHECKPOINT raises checkpointLsn and keptLsn, never lowers them, and is not emitted', () => {
  // A segment that starts after LSN 5 (its header's prevLsn) whose writer had taken LSNs up
  // to 9: the CHECKPOINT carries the writer's last LSN.
  const log = new Log().checkpoint(9, 4).checkpoint(9, 2).put(10, 'a', '1')
  const { buf, ix } = log.scan()
  const { c, out } = cursor({ prevLsn: 5, checkpointLsn: 3, asBatches: true })
  c.consume(buf, ix, 0, 0, IX_STRIDE)
  assert.is(c.checkpointLsn, 4)
  assert.is(c.keptLsn, 9)
  assert.is(c.maxLsn, 9)
  assert.equal(out.items, [])
  c.consume(buf, ix, 0, IX_STRIDE)
  assert.is(c.checkpointLsn, 4, 'a lower checkpoint LSN does not lower it')
  assert.is(c.keptLsn, 10)
  assert.equal(lsns(out.items), [[10, 10, [10]]])

  // Inside an open batch a CHECKPOINT discards the batch, and what it covers is not kept.
  const inBatch = new Log().put(1, 'a', '1').batch(2, [{ type: 'put', key: 'x', value: '1' }])
  inBatch.drop(3) // drop the COMMIT: BEGIN and member 2 remain
  inBatch.checkpoint(2, 1)
  const r = inBatch.scan()
  const k = cursor()
  assert.is(k.c.consume(r.buf, r.ix, 0), -1)
  assert.equal(lsns(k.out.items), [1])
  assert.is(k.c.orphans, 1)
  assert.is(k.c.checkpointLsn, 1)
  assert.is(k.c.keptLsn, 1, 'not raised while the batch is open')
  assert.is(k.c.batchStart, inBatch.starts[1])
})

test('an LSN going backwards returns the row index and consumes nothing from it on', () => {
  const log = new Log().put(1, 'a', '1').put(2, 'b', '2').put(2, 'b', 'stale').put(3, 'c', '3')
  const { buf, ix } = log.scan()
  const { c, out } = cursor()
  assert.is(c.consume(buf, ix, 0), 2 * IX_STRIDE, 'the third record is out of order')
  assert.equal(lsns(out.items), [1, 2])
  assert.is(c.end, log.starts[2], 'end stops before it')
  assert.is(c.keptLsn, 2)
  assert.is(c.lastSeen, 2)
  assert.is(c.maxLsn, 2, 'nothing after it was looked at')

  // Batch members and the COMMIT repeat or continue their BEGIN's LSN; going below is stale.
  const batch = new Log().put(1, 'a', '1').batch(2, [
    { type: 'put', key: 'x', value: '1' },
    { type: 'put', key: 'y', value: '2' },
  ])
  assert.is(cursor().c.consume(batch.scan().buf, batch.scan().ix, 0), -1, 'a BEGIN and its first member share an LSN')
  const stale = new Log().put(5, 'a', '1').batch(2, [{ type: 'put', key: 'x', value: '1' }])
  assert.is(cursor().c.consume(stale.scan().buf, stale.scan().ix, 0), IX_STRIDE, 'a BEGIN below the last LSN is stale')
  // A cursor that continues after prevLsn 7 takes nothing at or below it.
  const after = new Log().put(7, 'a', '1')
  const { c: c7, out: out7 } = cursor({ prevLsn: 7 })
  assert.is(c7.consume(after.scan().buf, after.scan().ix, 0), 0)
  assert.equal(out7.items, [])
})

test('marks and positions: maxMark is the highest durable mark seen; enterSegment moves end and only raises checkpointLsn', () => {
  const log = new Log().put(1, 'a', '1', 0).put(2, 'b', '2', 1).put(3, 'c', '3', 1)
  const { buf, ix } = log.scan()
  const { c } = cursor({ checkpointLsn: 2 })
  c.consume(buf, ix, 0)
  assert.is(c.maxMark, 1)
  c.enterSegment(32, 1)
  assert.is(c.end, 32)
  assert.is(c.checkpointLsn, 2)
  c.enterSegment(32, 3)
  assert.is(c.checkpointLsn, 3)
  assert.is(c.lastSeen, 3, 'LSN order carries on into the next segment')
})

test('countDropped counts PUT/DEL records as entries and BEGINs as batches, with the highest LSN and mark, over a row range', () => {
  const log = new Log()
    .put(1, 'a', '1', 0)
    .batch(2, [
      { type: 'put', key: 'x', value: '1' },
      { type: 'del', key: 'y' },
    ], 1)
    .checkpoint(3, 1, 3)
    .del(4, 'a', 3)
    .batch(5, [{ type: 'put', key: 'z', value: '1' }], 4)
  const { ix } = log.scan()
  const all = noneDropped()
  countDropped(ix, all)
  assert.equal(all, { droppedEntries: 1 + 2 + 1 + 1, droppedBatches: 2, maxLsn: 5, maxMark: 4 })
  // Rows [1, 6): the first batch (BEGIN, 2 members, COMMIT) and the CHECKPOINT.
  const some = noneDropped()
  countDropped(ix, some, IX_STRIDE, 6 * IX_STRIDE)
  assert.equal(some, { droppedEntries: 2, droppedBatches: 1, maxLsn: 3, maxMark: 3 })
  // Counts add up across calls.
  countDropped(ix, some, 6 * IX_STRIDE, 7 * IX_STRIDE)
  assert.equal(some, { droppedEntries: 3, droppedBatches: 1, maxLsn: 4, maxMark: 3 })
})

test.run()
