// Recovery on open (SPEC §2): torn tail vs corruption by durable marks, the three modes,
// the LSN floor after dropping records, read-only inspection.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import { encodeSegmentHeader, segmentName } from '../lib/format.js'
import { crc32cJs } from '../lib/crc32c.js'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError } from '../lib/index.js'
import { BACKENDS, backendImpl, segmentFiles, tmpDir } from './helpers/util.js'
import { jsBackend } from '../lib/js-backend.js'
import { RecordCursor } from '../lib/record-cursor.js'
import { SegmentReader, readSegmentBlocking } from '../lib/record-reader.js'

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

function openFails(fn: () => unknown, code: string): WalError {
  try {
    fn()
  } catch (err) {
    assert.instance(err, WalError)
    assert.is((err as WalError).code, code)
    return err as WalError
  }
  throw new Error(`expected ${code}`)
}

/** A log of n synced standalone puts (`k1`…), closed; returns its directory. */
function writeLog(backend: (typeof BACKENDS)[number], opts: object, n: number, value: string): string {
  const dir = tmpDir()
  const w = WriteAheadLog.openSync(dir, { backend, ...opts })
  for (let i = 1; i <= n; i++) w.appendSync({ type: 'put', key: `k${i}`, value })
  w.closeSync()
  return dir
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

  // Found in review: an empty segment out of place must not be taken for an interrupted repair.
  t('an empty stray segment at the end is WAL_CORRUPT; nothing is cut or removed', () => {
    const dir = writeLog(backend, base, 100, 'v')
    fs.writeFileSync(join(dir, segmentName(500)), encodeSegmentHeader({ prevLsn: 3, checkpointLsn: 0 }, crc32cJs))
    const before = segmentFiles(dir).map((n) => fs.readFileSync(join(dir, n)))
    for (const o of [{}, { readOnly: true }, { recovery: 'point-in-time' }] as const) {
      const err = openFails(() => WriteAheadLog.openSync(dir, { ...base, ...o }), 'WAL_CORRUPT')
      assert.is(err.segment, segmentName(500))
    }
    assert.equal(segmentFiles(dir).map((n) => fs.readFileSync(join(dir, n))), before)
  })

  // Issue 9 item 5: a torn-tail repair interrupted after its new segment was made durable.
  t('an interrupted torn-tail repair: finished by the next open, refused by strict, LSNs never reused', () => {
    const dir = tmpDir()
    let w = WriteAheadLog.openSync(dir, base)
    for (let i = 1; i <= 5; i++) w.appendSync({ type: 'put', key: `k${i}`, value: 'v' })
    w.closeSync()
    w = WriteAheadLog.openSync(dir, { ...base, sync: 'none' })
    for (let i = 6; i <= 8; i++) w.appendSync({ type: 'put', key: `k${i}`, value: 'v' }) // handed out, never synced
    w.closeSync()
    const seg = join(dir, segmentFiles(dir)[0])
    const damaged = fs.readFileSync(seg)
    damaged[32 + 5 * 35 + 33] ^= 1 // inside record 6: 7 and 8 follow with marks of 5
    fs.writeFileSync(seg, damaged)
    const r = WriteAheadLog.openSync(dir, base)
    assert.is(r.lastLsn, 8)
    r.closeSync()
    const repaired = segmentFiles(dir)
    assert.is(repaired.length, 2)
    fs.writeFileSync(seg, damaged) // as if the crash came before the cut
    openFails(() => WriteAheadLog.openSync(dir, { ...base, recovery: 'strict' }), 'WAL_CORRUPT')
    assert.ok(fs.readFileSync(seg).equals(damaged), 'strict changed nothing')
    const ro = WriteAheadLog.openSync(dir, { ...base, readOnly: true })
    assert.equal([...ro.replaySync({ from: 0 })].map((e) => e.lsn), [1, 2, 3, 4, 5])
    ro.closeSync()
    const fin = WriteAheadLog.openSync(dir, base)
    assert.is(fin.recovery.truncatedBytes, damaged.length - (32 + 5 * 35))
    assert.is(fin.appendSync({ type: 'put', key: 'after', value: 'v' }), 9)
    fin.closeSync()
    assert.is(fs.statSync(seg).size, 32 + 5 * 35)
    const again = WriteAheadLog.openSync(dir, { ...base, recovery: 'strict' })
    assert.equal([...again.replaySync({ from: 0 })].map((e) => e.lsn), [1, 2, 3, 4, 5, 9])
    again.closeSync()
  })
}


// Issue 9 item 12: a failed open (or a failed segment creation) releases every fd it opened.
test('a failed open and a failed segment creation leak no file descriptor', () => {
  const fdCount = () => fs.readdirSync('/proc/self/fd').length
  const dir = writeLog('js', { preallocate: false }, 20, 'v')
  const sync = jsBackend.fdatasyncBlocking
  const before = fdCount()
  ;(jsBackend as { fdatasyncBlocking: (fd: number) => void }).fdatasyncBlocking = () => {
    throw Object.assign(new Error('EIO: simulated'), { code: 'EIO', syscall: 'fdatasync' })
  }
  try {
    openFails(() => WriteAheadLog.openSync(dir, { backend: 'js', preallocate: false }), 'WAL_IO')
    openFails(() => WriteAheadLog.openSync(tmpDir(), { backend: 'js', preallocate: false }), 'WAL_IO')
  } finally {
    ;(jsBackend as { fdatasyncBlocking: (fd: number) => void }).fdatasyncBlocking = sync
  }
  assert.is(fdCount(), before)
  // The directory sync after a new segment's rename fails.
  const m = require('node:fs') as { fsyncSync: (fd: number) => void }
  const fsync = m.fsyncSync
  m.fsyncSync = () => {
    throw Object.assign(new Error('EIO: simulated'), { code: 'EIO', syscall: 'fsync' })
  }
  try {
    openFails(() => WriteAheadLog.openSync(tmpDir(), { backend: 'js', preallocate: false }), 'WAL_IO')
  } finally {
    m.fsyncSync = fsync
  }
  assert.is(fdCount(), before)
})

// Issue 9 item 11: a file that shrank between fstat and read (a readOnly open racing the
// writer's truncation at rotation) ends the scan at the short read instead of looping.
for (const backend of BACKENDS) {
  test(`[${backend}] the tail scan ends at a short read when the file shrank after it was measured`, () => {
    const dir = writeLog(backend, { preallocate: false }, 10, 'v')
    const name = segmentFiles(dir)[0]
    const file = fs.readFileSync(join(dir, name))
    const size = file.length + 65536 // measured before the file shrank
    const cursor = new RecordCursor(0, 0, 32)
    const fd = fs.openSync(join(dir, name), 'r')
    let reads = 0
    const impl = backendImpl(backend)
    const counting = { ...impl, readScanBlocking: (f: number, b: Uint8Array, p: number) => (reads++ < 1000 ? impl.readScanBlocking(f, b, p) : assert.unreachable('the scan loops')) }
    try {
      const reader = new SegmentReader(fd, size, cursor, () => -1, () => size, 4 * 1024 * 1024)
      readSegmentBlocking(reader, counting as typeof impl)
      assert.is(reader.stopped, 'end', 'the scan finished at the end of the file')
    } finally {
      fs.closeSync(fd)
    }
    assert.is(cursor.end, file.length)
    assert.is(cursor.keptLsn, 10)
  })
}

test.run()
