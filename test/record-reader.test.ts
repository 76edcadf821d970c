// The segment reader (lib/record-reader.ts) reads one segment file in chunks and decides
// where its records end: at a clean end (the file ends on a record boundary, or only zeros
// follow), at the writer's limit (not final: reading resumes when the limit grows), or at
// damage (a bad or incomplete record, zeros before later data, an LSN out of order), with
// the file offset of the damage. Files are written by hand; every case runs on both
// backends (their readScan) and through both drivers (calling thread and thread pool).
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Backend } from '../lib/backend.js'
import { crc32cJs } from '../lib/crc32c.js'
import { SEGMENT_HEADER_SIZE, TYPE_PUT, encodeSegmentHeader } from '../lib/format.js'
import { jsBackend } from '../lib/js-backend.js'
import { RecordCursor, type CursorOutput, type Entry } from '../lib/record-cursor.js'
import { SegmentReader, readSegment, readSegmentBlocking } from '../lib/record-reader.js'
import { WriteAheadLog } from '../lib/index.js'
import { BACKENDS, backendImpl, segmentFiles, tmpDir } from './helpers/util.js'
import { collect, writeLog } from './helpers/wal.js'

const DRIVERS = ['blocking', 'pool'] as const
type Driver = (typeof DRIVERS)[number]

/** A segment file's bytes: header, then one PUT per value (LSNs from 1), and where each record starts. */
function segment(values: number[], fill = 0x61): { bytes: Buffer; starts: number[]; end: number } {
  const buf = Buffer.alloc(SEGMENT_HEADER_SIZE + values.reduce((n, v) => n + 32 + 8 + v, 0))
  encodeSegmentHeader({ prevLsn: 0, checkpointLsn: 0 }, crc32cJs).copy(buf)
  const starts: number[] = []
  let pos = SEGMENT_HEADER_SIZE
  values.forEach((v, i) => {
    starts.push(pos)
    pos = jsBackend.encodeRecord(buf, pos, TYPE_PUT, i + 1, 0, Buffer.from(`key-${String(i + 1).padStart(4, '0')}`), Buffer.alloc(v, fill + (i % 20)))
  })
  return { bytes: buf, starts, end: pos }
}

let files = 0
function writeFile(bytes: Buffer): string {
  const dir = tmpDir('record-reader')
  fs.mkdirSync(dir, { recursive: true })
  const path = join(dir, `f${++files}`)
  fs.writeFileSync(path, bytes)
  return path
}

interface Opened {
  reader: SegmentReader
  cursor: RecordCursor
  out: CursorOutput
  close(): void
}

/**
 * A reader of `path` with chunks of `chunk` bytes. `limit` defaults to -1 (read to the end);
 * `size` and `measure` default to the file's size now.
 */
function open(path: string, chunk: number, o: { limit?: () => number; size?: number; measure?: () => number } = {}): Opened {
  const fd = fs.openSync(path, 'r')
  const size = o.size ?? fs.fstatSync(fd).size
  const out: CursorOutput = { from: 0, asBatches: false, items: [] }
  const cursor = new RecordCursor(0, 0, SEGMENT_HEADER_SIZE, out)
  const reader = new SegmentReader(fd, size, cursor, o.limit ?? (() => -1), o.measure ?? (() => fs.fstatSync(fd).size), chunk)
  return { reader, cursor, out, close: () => fs.closeSync(fd) }
}

async function drive(reader: SegmentReader, backend: Backend, driver: Driver): Promise<void> {
  if (driver === 'blocking') readSegmentBlocking(reader, backend)
  else await readSegment(reader, backend)
}

const lsnsOf = (out: CursorOutput) => out.items.map((e) => (e as Entry).lsn)
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1)

for (const name of BACKENDS) {
  const backend = backendImpl(name)
  for (const driver of DRIVERS) {
    const t = (title: string, fn: () => Promise<void>) => test(`[${name}, ${driver}] ${title}`, fn)

    t('a file that ends on a record boundary is a clean end', async () => {
      const s = segment([10, 0, 300, 5, 77])
      const r = open(writeFile(s.bytes), 1 << 20)
      try {
        await drive(r.reader, backend, driver)
        assert.is(r.reader.stopped, 'end')
        assert.is(r.reader.damage, undefined)
        assert.is(r.reader.pos, s.end)
        assert.is(r.cursor.end, s.end)
        assert.is(r.cursor.keptLsn, 5)
        assert.equal(lsnsOf(r.out), range(5))
        assert.equal((r.out.items[2] as Entry).value, Buffer.alloc(300, 0x63))
      } finally {
        r.close()
      }
    })

    t('an empty segment (header only) and a header followed only by zeros are clean ends', async () => {
      const empty = segment([])
      for (const zeros of [0, 1, 31, 32, 5000, 200_000]) {
        const r = open(writeFile(Buffer.concat([empty.bytes, Buffer.alloc(zeros)])), 4096)
        try {
          await drive(r.reader, backend, driver)
          assert.is(r.reader.stopped, 'end', `${zeros} zeros`)
          assert.is(r.cursor.end, SEGMENT_HEADER_SIZE)
          assert.equal(r.out.items, [])
        } finally {
          r.close()
        }
      }
    })

    t('records followed by a zero-filled tail (a preallocated segment) end cleanly, over any number of chunks', async () => {
      const s = segment([100, 200, 3])
      for (const [zeros, chunk] of [[10, 1 << 20], [40_000, 4096], [300_000, 65536], [4096 - (s.end % 4096), 4096]]) {
        const r = open(writeFile(Buffer.concat([s.bytes, Buffer.alloc(zeros)])), chunk)
        try {
          await drive(r.reader, backend, driver)
          assert.is(r.reader.stopped, 'end', `${zeros} zeros, ${chunk}-byte chunks`)
          assert.is(r.reader.damage, undefined)
          assert.is(r.cursor.end, s.end, 'the records end where the zeros begin')
          assert.equal(lsnsOf(r.out), [1, 2, 3])
        } finally {
          r.close()
        }
      }
    })

    t('zeros before later data are damage at the first non-zero byte, in the same chunk or a later one', async () => {
      const s = segment([50, 60])
      for (const [gap, chunk] of [[100, 1 << 20], [10_000, 4096], [4096 * 3, 4096], [70_000, 65536]]) {
        const bytes = Buffer.concat([s.bytes, Buffer.alloc(gap), Buffer.from([0, 0, 7, 1, 2])])
        const r = open(writeFile(bytes), chunk)
        try {
          await drive(r.reader, backend, driver)
          const where = `${gap} zeros, ${chunk}-byte chunks`
          assert.is(r.reader.stopped, 'damage', where)
          assert.equal(r.reader.damage, { offset: s.end + gap + 2, what: 'Zeroed bytes before later data' }, where)
          assert.is(r.cursor.end, s.end, `${where}: the records before the zeros were consumed`)
          assert.equal(lsnsOf(r.out), [1, 2])
        } finally {
          r.close()
        }
      }
    })

    t('an incomplete record at the end of the file is damage at its start', async () => {
      const s = segment([40, 400])
      const last = s.starts[1]
      // Cut inside the last record's header, and inside its payload.
      for (const cut of [last + 5, last + 20, last + 33, s.end - 1]) {
        const r = open(writeFile(s.bytes.subarray(0, cut)), 1 << 20)
        try {
          await drive(r.reader, backend, driver)
          assert.is(r.reader.stopped, 'damage', `cut at ${cut}`)
          assert.equal(r.reader.damage, { offset: last, what: 'Incomplete record' }, `cut at ${cut}`)
          assert.equal(lsnsOf(r.out), [1])
          assert.is(r.cursor.end, last)
        } finally {
          r.close()
        }
      }
    })

    t('a record whose checksum fails is damage at its start; the records before it are consumed', async () => {
      const s = segment([20, 30, 40, 50])
      for (const off of [4, 20, 32, 32 + 10 + 5]) {
        const bytes = Buffer.from(s.bytes)
        bytes[s.starts[2] + off] ^= 0x10
        const r = open(writeFile(bytes), 1 << 20)
        try {
          await drive(r.reader, backend, driver)
          assert.is(r.reader.stopped, 'damage')
          assert.equal(r.reader.damage, { offset: s.starts[2], what: 'Invalid record (checksum or header mismatch)' }, `byte ${off} of record 3 flipped`)
          assert.equal(lsnsOf(r.out), [1, 2])
          assert.is(r.cursor.keptLsn, 2)
          assert.is(r.reader.pos, s.starts[2])
        } finally {
          r.close()
        }
      }
    })

    t('a valid record whose LSN goes backwards is damage at its start', async () => {
      const s = segment([20, 30, 40])
      // A stale copy of record 2 after record 3.
      const bytes = Buffer.concat([s.bytes, s.bytes.subarray(s.starts[1], s.starts[2])])
      const r = open(writeFile(bytes), 1 << 20)
      try {
        await drive(r.reader, backend, driver)
        assert.is(r.reader.stopped, 'damage')
        assert.equal(r.reader.damage, { offset: s.end, what: 'Record with an LSN out of order (a stale copy of older data)' })
        assert.equal(lsnsOf(r.out), [1, 2, 3])
      } finally {
        r.close()
      }
    })

    t('the writer\'s limit stops reading; reading resumes where it stopped when the limit grows', async () => {
      const s = segment([10, 20, 30, 40, 50, 60])
      let limit = SEGMENT_HEADER_SIZE
      const r = open(writeFile(s.bytes), 1 << 20, { limit: () => limit })
      try {
        await drive(r.reader, backend, driver)
        assert.is(r.reader.stopped, 'limit', 'nothing written yet')
        assert.equal(r.out.items, [])
        limit = s.starts[2]
        await drive(r.reader, backend, driver)
        assert.is(r.reader.stopped, 'limit')
        assert.equal(lsnsOf(r.out), [1, 2], 'nothing past the limit is read')
        assert.is(r.reader.next(), undefined, 'the same limit: still nothing to read')
        assert.is(r.reader.stopped, 'limit')
        limit = s.starts[5]
        await drive(r.reader, backend, driver)
        assert.is(r.reader.stopped, 'limit')
        assert.equal(lsnsOf(r.out), [1, 2, 3, 4, 5])
        limit = -1 // the writer finished the segment: read it to its end
        await drive(r.reader, backend, driver)
        assert.is(r.reader.stopped, 'end')
        assert.equal(lsnsOf(r.out), range(6))
        assert.is(r.reader.next(), undefined, 'the end is final')
      } finally {
        r.close()
      }
    })

    t('zeros inside what the writer\'s limit says is written are damage', async () => {
      const s = segment([10, 20])
      const r = open(writeFile(Buffer.concat([s.bytes, Buffer.alloc(4096)])), 1 << 20, { limit: () => s.end + 100 })
      try {
        await drive(r.reader, backend, driver)
        assert.is(r.reader.stopped, 'damage')
        assert.equal(r.reader.damage, { offset: s.end, what: 'Zeroed bytes inside written data' })
        assert.equal(lsnsOf(r.out), [1, 2])
      } finally {
        r.close()
      }
    })

    t('a file that grew after it was measured is measured again and read to its new end', async () => {
      const s = segment([10, 20, 30, 40])
      let reads = 0
      const counting: Backend = {
        ...backend,
        readScanBlocking: (fd, buf, p) => (reads++, backend.readScanBlocking(fd, buf, p)),
        readScan: (fd, buf, p) => (reads++, backend.readScan(fd, buf, p)),
      }
      const r = open(writeFile(s.bytes), 1 << 20, { size: s.starts[1] }) // measured when it held one record
      try {
        await drive(r.reader, counting, driver)
        assert.is(r.reader.stopped, 'end')
        assert.equal(lsnsOf(r.out), [1, 2, 3, 4])
        assert.is(r.cursor.end, s.end)
        // The record that was there, the rest in one chunk, the read that finds the end.
        assert.ok(reads <= 3, `${reads} reads: the new size was used, not read a record at a time`)
      } finally {
        r.close()
      }
    })

    t('zero bytes at the end of a chunk, too few for a record header, are read on: a record may start with them', async () => {
      // A record whose checksum's first byte is zero, found by varying its value.
      let s = segment([10, 0, 20])
      for (let v = 1; s.bytes[s.starts[1]] !== 0; v++) s = segment([10, v, 20])
      const zeroStart = s.starts[1]
      // Chunks that end one byte into that record, and ones that hold a byte at a time.
      for (const chunk of [zeroStart - SEGMENT_HEADER_SIZE + 1, 1]) {
        const r = open(writeFile(s.bytes), chunk)
        try {
          await drive(r.reader, backend, driver)
          assert.is(r.reader.damage, undefined, `${chunk}-byte chunks`)
          assert.is(r.reader.stopped, 'end')
          assert.equal(lsnsOf(r.out), [1, 2, 3])
        } finally {
          r.close()
        }
      }
    })

    t('records larger than a chunk, and records across chunk boundaries, are read whole', async () => {
      const values = [0, 1, 300, 5, 1000, 31, 32, 33, 4000, 7, 64, 2]
      const s = segment(values)
      const path = writeFile(Buffer.concat([s.bytes, Buffer.alloc(777)]))
      for (const chunk of [1, 32, 33, 64, 100, 1024]) {
        const r = open(path, chunk)
        try {
          await drive(r.reader, backend, driver)
          assert.is(r.reader.stopped, 'end', `${chunk}-byte chunks`)
          assert.is(r.cursor.end, s.end, `${chunk}-byte chunks`)
          assert.equal(lsnsOf(r.out), range(values.length))
          r.out.items.forEach((e, i) => {
            const { key, value } = e as Entry
            assert.is(key.toString(), `key-${String(i + 1).padStart(4, '0')}`)
            assert.ok(value!.equals(Buffer.alloc(values[i], 0x61 + (i % 20))), `${chunk}-byte chunks: value of record ${i + 1}`)
          })
        } finally {
          r.close()
        }
      }
    })
  }
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)
  const opts = { backend, segmentSize: 4096, preallocate: false } as const

  // A segment that grew after the reader measured it is measured again and read to its new
  // end; zero bytes at the end of a chunk, too few to be a record header, are read on, not
  // taken for a zero-filled tail.
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
}

// A file that shrank between fstat and read (a readOnly open racing the
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


// Records large next to the chunk size: the chunk grows to hold several, so a record cut at
// a chunk's end is read again only now and then (at 256 KiB chunks and 129 KiB records,
// every record was read twice).
for (const name of BACKENDS) {
  test(`${name}: records larger than a quarter of the chunk are read about once, not twice`, async () => {
    const real = backendImpl(name)
    for (const kib of [60, 129, 200, 300]) {
      const s = segment(Array.from({ length: 40 }, () => kib * 1024))
      const path = writeFile(s.bytes)
      let read = 0
      const counting: Backend = {
        ...real,
        readScanBlocking: (fd, buf, position) => {
          read += buf.length
          return real.readScanBlocking(fd, buf, position)
        },
      }
      const r = open(path, 256 * 1024)
      try {
        readSegmentBlocking(r.reader, counting)
        assert.is(r.reader.stopped, 'end')
        assert.equal(lsnsOf(r.out), range(40))
      } finally {
        r.close()
      }
      const ratio = read / s.bytes.length
      assert.ok(ratio < 1.3, `${kib} KiB records: ${ratio.toFixed(2)}x the file read`)
    }
  })
}

// The zero check after the last record: the backends' findNonZero, one call however long the
// zeros run, skipping holes. Offsets on both sides of the native (64 KiB) and pure-TS
// (256 KiB) chunk sizes, written zeros and holes (ftruncate) alike.
for (const name of BACKENDS) {
  test(`${name}: findNonZero finds the first non-zero byte after written zeros and holes, or where the zeros end`, async () => {
    const backend = backendImpl(name)
    const dir = tmpDir('find-non-zero')
    fs.mkdirSync(dir, { recursive: true })
    const K = 1024
    const cases: { what: string; make: (fd: number) => void; from: number; at: number; size: number }[] = [
      { what: 'empty file', make: () => {}, from: 0, at: -1, size: 0 },
      { what: 'written zeros only', make: (fd) => fs.writeSync(fd, Buffer.alloc(700 * K)), from: 5, at: -1, size: 700 * K },
      { what: 'a hole only', make: (fd) => fs.ftruncateSync(fd, 9 * 1024 * K), from: 100, at: -1, size: 9 * 1024 * K },
      { what: 'from past the end', make: (fd) => fs.writeSync(fd, Buffer.alloc(10)), from: 50, at: -1, size: 50 },
    ]
    for (const at of [0, 1, 64 * K - 1, 64 * K, 64 * K + 1, 256 * K - 1, 256 * K, 256 * K + 1, 1024 * K + 7]) {
      cases.push({ what: `written zeros, then a byte at ${at}`, make: (fd) => (fs.writeSync(fd, Buffer.alloc(at)), fs.writeSync(fd, Buffer.from([9, 0, 0]))), from: 0, at, size: -1 })
      cases.push({ what: `a hole, then a byte at ${at}`, make: (fd) => (fs.ftruncateSync(fd, at + 4096), fs.writeSync(fd, Buffer.from([1]), 0, 1, at)), from: 0, at, size: -1 })
    }
    for (const c of cases) {
      const path = join(dir, `f${++files}`)
      const fd = fs.openSync(path, 'w+')
      try {
        c.make(fd)
        const size = fs.fstatSync(fd).size
        const blocking = backend.findNonZeroBlocking(fd, c.from)
        const pooled = await backend.findNonZero(fd, c.from)
        for (const [how, r] of [['blocking', blocking], ['pool', pooled]] as const) {
          assert.is(r.at, c.at, `${c.what} (${how}): first non-zero byte`)
          if (c.at < 0) assert.is(r.end, c.size >= 0 ? c.size : size, `${c.what} (${how}): the zeros end at the end of the file`)
          else assert.ok(r.end > c.at && r.end <= size, `${c.what} (${how}): reading stopped past the byte (${r.end})`)
        }
      } finally {
        fs.closeSync(fd)
      }
    }
  })
}

test.run()
