// Recovery on open (lib/recovery.ts): damage in the last segment is a torn tail (removed)
// unless a later record's durable mark shows it had been synced (then WAL_CORRUPT, and
// nothing changes); the three modes; the LSN floor after dropping records; readOnly
// inspection; and a preallocated zero tail, which no mode treats as damage.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError, type Entry } from '../lib/index.js'
import { BACKENDS, backendImpl, segmentFiles, tmpDir } from './helpers/util.js'
import { collect, openFails, writeLog } from './helpers/wal.js'

function snapshot(dir: string): Map<string, Buffer> {
  return new Map(fs.readdirSync(dir).filter((n) => n !== 'LOCK').map((n) => [n, fs.readFileSync(join(dir, n))]))
}

function recordOffsets(backend: (typeof BACKENDS)[number], file: string): number[] {
  const buf = fs.readFileSync(file)
  const r = backendImpl(backend).scan(buf, 32, buf.length)
  const out: number[] = []
  for (let i = 0; i < r.index.length; i += 6) out.push(r.index[i])
  return out
}

function zeroRecord(file: string, offsets: number[], k: number): void {
  const buf = fs.readFileSync(file)
  buf.fill(0, offsets[k], offsets[k + 1])
  fs.writeFileSync(file, buf)
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void> | void) => test(`[${backend}] ${name}`, fn)
  const base = { backend, preallocate: false } as const

  t('damage followed by records whose marks do not reach past it is a torn tail', () => {
    const dir = tmpDir()
    const w1 = WriteAheadLog.openSync(dir, base)
    w1.appendSync({ type: 'put', key: 'k1', value: 'durable' }) // lsn 1, synced
    w1.closeSync()
    // Unsynced appends: their marks all say "1 is the last durable LSN".
    const w2 = WriteAheadLog.openSync(dir, { ...base, sync: 'none' })
    for (let i = 2; i <= 6; i++) w2.appendSync({ type: 'put', key: `k${i}`, value: 'unsynced' })
    w2.closeSync()
    const file = join(dir, segmentFiles(dir)[0])
    const offs = recordOffsets(backend, file)
    zeroRecord(file, offs, 2) // lsn 3 lost: the disk kept later pages but not this one
    const r = WriteAheadLog.openSync(dir, base)
    assert.equal([...r.replaySync({ from: 0 })].map((e) => e.lsn), [1, 2])
    assert.is(r.recovery.droppedEntries, 3, 'lsn 4..6 were readable and dropped')
    assert.ok(r.recovery.truncatedBytes > 0)
    assert.is(r.lastLsn, 6, 'LSNs seen on disk are never reused')
    assert.is(r.appendSync({ type: 'put', key: 'next', value: 'x' }), 7)
    r.closeSync()
    const again = WriteAheadLog.openSync(dir, base)
    assert.equal([...again.replaySync({ from: 0 })].map((e) => e.lsn), [1, 2, 7])
    again.closeSync()
  })

  t('damage that a later durable mark shows was synced is WAL_CORRUPT and nothing changes', () => {
    const dir = writeLog(backend, base, 6, 'synced')
    const file = join(dir, segmentFiles(dir)[0])
    const offs = recordOffsets(backend, file)
    zeroRecord(file, offs, 2)
    const before = snapshot(dir)
    for (const recovery of ['tolerate-tail', 'strict'] as const) {
      const err = openFails(() => WriteAheadLog.openSync(dir, { ...base, recovery }), 'WAL_CORRUPT')
      assert.is(err.segment, segmentFiles(dir)[0])
      assert.is(err.offset, offs[2])
      assert.match(err.message, /byte offset/)
    }
    openFails(() => WriteAheadLog.openSync(dir, { ...base, readOnly: true }), 'WAL_CORRUPT')
    const after = snapshot(dir)
    assert.equal([...after.keys()], [...before.keys()])
    for (const [n, b] of before) assert.ok(after.get(n)!.equals(b), `${n} untouched`)
    // point-in-time keeps what precedes the damage and reports the rest.
    const p = WriteAheadLog.openSync(dir, { ...base, recovery: 'point-in-time' })
    assert.equal([...p.replaySync({ from: 0 })].map((e) => e.lsn), [1, 2])
    assert.is(p.recovery.mode, 'point-in-time')
    assert.is(p.recovery.droppedEntries, 3)
    p.closeSync()
    // Reopened without appending: the dropped LSNs are still never reused.
    const q = WriteAheadLog.openSync(dir, base)
    assert.is(q.lastLsn, 6)
    assert.is(q.appendSync({ type: 'put', key: 'n', value: 'v' }), 7)
    q.closeSync()
  })

  t('strict refuses a torn tail; tolerate-tail removes it; readOnly skips it and writes nothing', () => {
    const dir = writeLog(backend, base, 3, 'v')
    const file = join(dir, segmentFiles(dir)[0])
    fs.truncateSync(file, fs.statSync(file).size - 5)
    const before = snapshot(dir)
    openFails(() => WriteAheadLog.openSync(dir, { ...base, recovery: 'strict' }), 'WAL_CORRUPT')
    const ro = WriteAheadLog.openSync(dir, { ...base, readOnly: true })
    assert.equal([...ro.replaySync({ from: 0 })].map((e) => e.lsn), [1, 2])
    ro.closeSync()
    assert.not.ok(fs.existsSync(join(dir, 'LOCK.tmp')))
    for (const [n, b] of before) assert.ok(fs.readFileSync(join(dir, n)).equals(b), 'readOnly modified nothing')
    const r = WriteAheadLog.openSync(dir, base)
    assert.equal([...r.replaySync({ from: 0 })].map((e) => e.lsn), [1, 2])
    assert.is(r.recovery.truncatedBytes, 32 + 3 - 5)
    r.closeSync()
  })

  t('point-in-time cuts at the first corruption even in an older segment', () => {
    const opts = { ...base, segmentSize: 4096 }
    const dir = writeLog(backend, opts, 100, 'x'.repeat(100))
    const segs = segmentFiles(dir)
    assert.ok(segs.length >= 3)
    const file = join(dir, segs[1])
    const offs = recordOffsets(backend, file)
    const buf = fs.readFileSync(file)
    buf[offs[3] + 40] ^= 0x10
    fs.writeFileSync(file, buf)
    const firstOfSeg1 = Number(segs[1].slice(0, 20))
    // Default open only reads the last segment: it opens, and replay meets the damage.
    const d = WriteAheadLog.openSync(dir, opts)
    const err = openFails(() => [...d.replaySync({ from: 0 })], 'WAL_CORRUPT')
    assert.is(err.segment, segs[1])
    assert.is(err.offset, offs[3])
    d.closeSync()
    const p = WriteAheadLog.openSync(dir, { ...opts, recovery: 'point-in-time' })
    const lsns = [...p.replaySync({ from: 0 })].map((e) => e.lsn)
    assert.equal(lsns, Array.from({ length: firstOfSeg1 + 2 }, (_, i) => i + 1))
    assert.is(p.recovery.droppedEntries, 100 - (firstOfSeg1 + 2) - 1, 'the damaged record itself is unreadable')
    // The cut segment is kept; the later ones are gone; appends continue in a new segment
    // named above every LSN seen (the floor that keeps dropped LSNs from being reused).
    const after = segmentFiles(dir)
    assert.equal(after.slice(0, 2), segs.slice(0, 2))
    assert.is(after.length, 3)
    assert.is(Number(after[2].slice(0, 20)), 101)
    assert.is(p.appendSync({ type: 'put', key: 'after', value: 'v' }), 101)
    p.closeSync()
  })

  t('a stale run after the tail is dropped and counted once', () => {
    const dir = writeLog(backend, base, 5, 'v')
    const file = join(dir, segmentFiles(dir)[0])
    const offs = recordOffsets(backend, file)
    const bytes = fs.readFileSync(file)
    fs.appendFileSync(file, bytes.subarray(offs[1], offs[3])) // stale copies of LSN 2 and 3
    const r = WriteAheadLog.openSync(dir, base)
    assert.equal([...r.replaySync({ from: 0 })].map((e) => e.lsn), [1, 2, 3, 4, 5])
    assert.is(r.recovery.droppedEntries, 2)
    assert.is(r.recovery.truncatedBytes, offs[3] - offs[1])
    r.closeSync()
  })

  t('behind a torn last header, damage in the segment before it is corruption, not a tail', () => {
    const opts = { ...base, segmentSize: 4096 }
    const dir = writeLog(backend, opts, 60, 'x'.repeat(100))
    const segs = segmentFiles(dir)
    const prev = join(dir, segs[segs.length - 2])
    const bytes = fs.readFileSync(prev)
    bytes[bytes.length - 3] ^= 0x01 // the older segment's last record: synced before its successor existed
    fs.writeFileSync(prev, bytes)
    fs.writeFileSync(join(dir, segs[segs.length - 1]), Buffer.alloc(32)) // torn header on the last one
    const before = snapshot(dir)
    const err = openFails(() => WriteAheadLog.openSync(dir, opts), 'WAL_CORRUPT')
    assert.is(err.segment, segs[segs.length - 2])
    for (const [n, b] of before) assert.ok(fs.readFileSync(join(dir, n)).equals(b), `${n} untouched`)
  })

  t('a zeroed or short header on the last segment is a torn tail', () => {
    for (const damage of ['empty', 'short', 'zeroed'] as const) {
      const opts = { ...base, segmentSize: 4096 }
      const dir = writeLog(backend, opts, 60, 'x'.repeat(100))
      const segs = segmentFiles(dir)
      const last = join(dir, segs[segs.length - 1])
      const lastFirst = Number(segs[segs.length - 1].slice(0, 20))
      if (damage === 'empty') fs.truncateSync(last, 0)
      else if (damage === 'short') fs.truncateSync(last, 17)
      else fs.writeFileSync(last, Buffer.alloc(32))
      const r = WriteAheadLog.openSync(dir, opts)
      assert.equal([...r.replaySync({ from: 0 })].map((e) => e.lsn), Array.from({ length: lastFirst - 1 }, (_, i) => i + 1), damage)
      assert.ok(r.appendSync({ type: 'put', key: 'n', value: 'v' }) >= lastFirst, `${damage}: no LSN reuse`)
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
}

test.run()
