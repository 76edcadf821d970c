// Damage other than a clean cut: garbage and zero runs after the tail, and single-bit
// flips in the last and in an older segment. Whatever happens, no wrong data is yielded;
// a flip is either repaired as a torn tail or reported as WAL_CORRUPT with the segment and
// offset, leaving every file as it was.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WalError, WriteAheadLog } from '../../../lib/index.js'
import { BACKENDS, prng, randomBytes, segmentFiles, tmpDir, type BackendName } from '../../helpers/util.js'
import {
  HEADER,
  assertSameFiles,
  copyDir,
  expectWalError,
  plainBatch,
  plainUnit,
  randomUnits,
  recordRanges,
  replayAll,
  snapshot,
  writeUnits,
  type PlainBatch,
  type Unit,
} from './common.js'

const SEGMENT_SIZE = 4096

interface Built {
  dir: string
  units: Unit[]
  segs: string[]
}

async function build(backend: BackendName, seed: number, preallocate = false): Promise<Built> {
  const dir = tmpDir(`corrupt-${backend}`)
  const wal = await WriteAheadLog.open(dir, { backend, preallocate, segmentSize: SEGMENT_SIZE })
  let units: Unit[]
  if (preallocate) {
    // File sizes are not offsets here; only the model matters.
    units = []
    for (const s of randomUnits(seed, 60)) {
      if (s.kind === 'one') {
        const lsn = await wal.append(s.ops[0])
        units.push({ ...s, first: lsn, last: lsn, seg: '', start: 0, end: 0 })
      } else {
        const r = await wal.appendBatch(s.ops)
        units.push({ ...s, ...r, seg: '', start: 0, end: 0 })
      }
    }
  } else {
    units = await writeUnits(wal, dir, randomUnits(seed, 400), {
      until: (us) => new Set(us.map((u) => u.seg)).size >= 2 && us[us.length - 1].end >= 1500,
    })
  }
  await wal.close()
  return { dir, units, segs: segmentFiles(dir) }
}

/** Every yielded batch is exactly a unit that was written; returns their indices (increasing). */
function assertTruthful(got: PlainBatch[], units: Unit[], where: string): number[] {
  const idx: number[] = []
  for (const b of got) {
    const i = units.findIndex((u) => u.first === b.first)
    assert.ok(i >= 0, `${where}: yielded batch ${b.first}..${b.last} was never written as a unit`)
    assert.equal(b, plainUnit(units[i]), `${where}: yielded batch ${b.first} equals what was written`)
    if (idx.length) assert.ok(i > idx[idx.length - 1], `${where}: batches in increasing LSN order, each once`)
    idx.push(i)
  }
  return idx
}

/** Replays everything it can; stops at the first error, which it returns. */
async function drain(wal: WriteAheadLog, how: 'batches' | 'entries' | 'sync', units: Unit[]): Promise<{ got: PlainBatch[]; err?: unknown }> {
  const got: PlainBatch[] = []
  try {
    if (how === 'batches') {
      for await (const b of wal.replayBatches({ from: 0 })) got.push(plainBatch(b))
    } else {
      // Regroup entries into units by the model's LSN ranges; a partial unit shows as such.
      const entries = []
      if (how === 'entries') for await (const e of wal.replay({ from: 0 })) entries.push(e)
      else for (const e of wal.replaySync({ from: 0 })) entries.push(e)
      regroup(entries, units, got)
    }
  } catch (err) {
    return { got, err }
  }
  return { got }
}

function regroup(entries: { lsn: number; type: 'put' | 'del'; key: Buffer; value: Buffer | undefined }[], units: Unit[], out: PlainBatch[]): void {
  let i = 0
  while (i < entries.length) {
    const u = units.find((x) => x.first <= entries[i].lsn && entries[i].lsn <= x.last)
    const n = u ? u.last - entries[i].lsn + 1 : 1
    const part = entries.slice(i, i + n)
    out.push(plainBatch({ first: part[0].lsn, last: part[part.length - 1].lsn, entries: part }))
    i += n
  }
}

/** The unit (-1: the segment header) and the record holding byte `off` of `seg`. */
function locate(b: Built, seg: string, off: number): { unit: number; rec: [number, number] } {
  if (off < HEADER) return { unit: -1, rec: [0, HEADER] }
  const unit = b.units.findIndex((u) => u.seg === seg && u.start <= off && off < u.end)
  const rec = recordRanges(b.units[unit]).find(([s, e]) => s <= off && off < e)!
  return { unit, rec }
}

for (const backend of BACKENDS) {
  const other: BackendName = backend === 'native' ? 'js' : 'native'

  test(`${backend}: garbage and zero runs after the tail: default open keeps everything before it`, async () => {
    const b = await build(backend, backend === 'native' ? 11 : 12)
    const want = b.units.map(plainUnit)
    const last = b.segs[b.segs.length - 1]
    const rand = prng(backend === 'native' ? 77 : 78)
    const nonZero = (n: number) => {
      const g = randomBytes(rand, n)
      g[0] |= 1 // the first byte is not zero, so this is not a zero run
      g[n - 1] |= 0x80
      return g
    }
    const tails: [string, Buffer, boolean][] = [] // name, bytes, is a pure zero run
    for (const n of [1, 4, 31, 32, 33, 40, 100, 1000, 5000]) tails.push([`${n} random bytes`, nonZero(n), false])
    for (const n of [1, 31, 32, 100, 5000]) tails.push([`${n} zero bytes`, Buffer.alloc(n), true])
    tails.push(['zeros then garbage', Buffer.concat([Buffer.alloc(64), nonZero(50)]), false])
    tails.push(['garbage then zeros', Buffer.concat([nonZero(50), Buffer.alloc(4000)]), false])
    // Something that looks like a record header: plausible type and length, wrong checksum.
    const fake = Buffer.alloc(HEADER + 8)
    fake.writeUInt32LE(0xdeadbeef, 0)
    fake.writeUInt32LE(8, 4)
    fake[8] = 5
    fake.writeUInt32LE(b.units[b.units.length - 1].last + 1, 16)
    tails.push(['a checkpoint-like record with a bad checksum', fake, false])

    for (const [name, tail, zeros] of tails) {
      const at = `${backend}, ${name}`
      const dir = tmpDir('tail')
      copyDir(b.dir, dir)
      const path = join(dir, last)
      const clean = fs.readFileSync(path)
      fs.appendFileSync(path, tail)
      const damaged = snapshot(dir)

      if (!zeros) {
        const err = await expectWalError(WriteAheadLog.open(dir, { backend, preallocate: false, recovery: 'strict' }), 'WAL_CORRUPT', `${at}: strict`)
        assert.is(err.segment, last, `${at}: strict names the segment`)
        assert.is(err.offset, clean.length, `${at}: strict names the offset of the damage`)
        assertSameFiles(damaged, snapshot(dir), `${at}: strict left the files alone`)
      }

      const ro = await WriteAheadLog.open(dir, { backend, readOnly: true })
      assert.equal(await replayAll(ro), want, `${at}: readOnly replay`)
      await ro.close()
      assertSameFiles(damaged, snapshot(dir), `${at}: readOnly left the files alone`)

      const wal = await WriteAheadLog.open(dir, { backend, preallocate: false, segmentSize: SEGMENT_SIZE })
      assert.equal(await replayAll(wal), want, `${at}: replay keeps everything before the tail`)
      if (!zeros) assert.ok(wal.recovery.truncatedBytes > 0, `${at}: recovery reports the removed tail`)
      assert.ok(wal.recovery.truncatedBytes <= tail.length, `${at}: truncatedBytes ${wal.recovery.truncatedBytes} <= ${tail.length}`)
      assert.is(wal.recovery.droppedEntries, 0, `${at}: no entry dropped`)
      assert.ok(fs.readFileSync(path).subarray(0, clean.length).equals(clean), `${at}: the records before the tail are untouched`)
      const lsn = await wal.append({ type: 'put', key: 'after', value: name })
      assert.is(lsn, wal.lastLsn)
      assert.ok(lsn > b.units[b.units.length - 1].last, `${at}: new LSN above the kept ones`)
      await wal.close()

      const again = await WriteAheadLog.open(dir, { backend: other, preallocate: false, recovery: 'strict' })
      assert.equal(await replayAll(again), [...want, plainUnit({ first: lsn, last: lsn, ops: [{ type: 'put', key: 'after', value: name }] })], `${at}: strict reopen after the repair`)
      await again.close()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test(`${backend}: a stale copy of an earlier valid record after the tail is not replayed again`, async () => {
    // A valid checksum is not enough: LSNs must keep increasing, or replay would yield an
    // old entry a second time, out of order (Entry.lsn is "unique, strictly increasing").
    const b = await build(backend, backend === 'native' ? 13 : 14)
    const last = b.segs[b.segs.length - 1]
    const want = b.units.map(plainUnit)
    const clean = fs.readFileSync(join(b.dir, last))
    const standalone = b.units.filter((u) => u.seg === last && u.kind === 'one')
    for (const u of [standalone[0], standalone[standalone.length - 1]]) {
      const at = `${backend}, stale copy of LSN ${u.first}`
      const dir = tmpDir('stale')
      copyDir(b.dir, dir)
      fs.appendFileSync(join(dir, last), clean.subarray(u.start, u.end))
      const strictDir = tmpDir('stale-strict')
      copyDir(dir, strictDir)
      const wal = await WriteAheadLog.open(dir, { backend, preallocate: false })
      const got = await replayAll(wal)
      assertTruthful(got, b.units, at)
      assert.equal(got, want, `${at}: replay yields each LSN once, in order`)
      await wal.close()
      const damaged = snapshot(strictDir)
      const err = await expectWalError(WriteAheadLog.open(strictDir, { backend, preallocate: false, recovery: 'strict' }), 'WAL_CORRUPT', `${at}: strict`)
      assert.is(err.segment, last)
      assert.is(err.offset, clean.length, `${at}: strict names the stale record`)
      assertSameFiles(damaged, snapshot(strictDir), `${at}: strict left the files alone`)
      fs.rmSync(dir, { recursive: true, force: true })
      fs.rmSync(strictDir, { recursive: true, force: true })
    }
  })

  test(`${backend}: a preallocated zero tail is normal in every mode, strict included`, async () => {
    const b = await build(backend, backend === 'native' ? 21 : 22, true)
    assert.ok(b.segs.length >= 2, 'several segments')
    assert.is(fs.statSync(join(b.dir, b.segs[b.segs.length - 1])).size, SEGMENT_SIZE, 'the last segment is preallocated to segmentSize')
    const want = b.units.map(plainUnit)
    const before = snapshot(b.dir)
    for (const recovery of ['strict', 'tolerate-tail', 'point-in-time'] as const) {
      for (const readOnly of [true, false]) {
        const opts = { backend, preallocate: true, segmentSize: SEGMENT_SIZE, recovery, readOnly }
        const wal = readOnly ? await WriteAheadLog.open(b.dir, opts) : WriteAheadLog.openSync(b.dir, opts)
        assert.equal(wal.recovery, { mode: recovery, truncatedBytes: 0, droppedEntries: 0, droppedBatches: 0 }, `${recovery}: nothing removed`)
        assert.equal(await replayAll(wal), want, `${recovery}${readOnly ? ' readOnly' : ''}: replay`)
        await wal.close()
      }
    }
    assertSameFiles(before, snapshot(b.dir), 'a clean preallocated log is left as it was')
  })

  test(`${backend}: single-bit flips in the last segment: a torn-tail repair or WAL_CORRUPT, never wrong data`, async () => {
    const b = await build(backend, backend === 'native' ? 31 : 32)
    const last = b.segs[b.segs.length - 1]
    const bytes = fs.readFileSync(join(b.dir, last))
    const lastUnit = b.units.length - 1
    const rand = prng(backend === 'native' ? 1031 : 2032)
    const FLIPS = 60
    let repaired = 0
    let corrupt = 0
    for (let n = 0; n < FLIPS; n++) {
      // Bias a third of the flips into the last unit, the rest anywhere in the file.
      const lo = n % 3 === 0 ? b.units[lastUnit].start : 0
      const off = lo + (rand() % (bytes.length - lo))
      const bit = rand() % 8
      const at = `${backend}, flip bit ${bit} of byte ${off} in ${last}`
      const { unit, rec } = locate(b, last, off)
      const dir = tmpDir('flip')
      copyDir(b.dir, dir)
      const flipped = Buffer.from(bytes)
      flipped[off] ^= 1 << bit
      fs.writeFileSync(join(dir, last), flipped)
      const before = snapshot(dir)

      // readOnly: whatever it does, it yields only what was written and modifies nothing.
      try {
        const ro = await WriteAheadLog.open(dir, { backend, readOnly: true })
        const r = await drain(ro, 'batches', b.units)
        assertTruthful(r.got, b.units, `${at} (readOnly)`)
        if (r.err) assert.is((r.err as WalError).code, 'WAL_CORRUPT', `${at}: readOnly replay error`)
        await ro.close()
      } catch (err) {
        assert.instance(err, WalError, `${at}: readOnly open error`)
        assert.is((err as WalError).code, 'WAL_CORRUPT', `${at}: readOnly open error code`)
      }
      assertSameFiles(before, snapshot(dir), `${at}: readOnly left the files alone`)

      const opts = { backend, preallocate: false, segmentSize: SEGMENT_SIZE }
      let wal: WriteAheadLog | undefined
      let openErr: unknown
      try {
        wal = n % 2 ? WriteAheadLog.openSync(dir, opts) : await WriteAheadLog.open(dir, opts)
      } catch (err) {
        openErr = err
      }
      if (unit === lastUnit) {
        // Nothing follows the damaged unit: a torn tail by definition.
        assert.ok(wal, `${at}: damage in the last unit is a torn tail (got ${String(openErr)})`)
      } else {
        // The unit after the damaged one carries a durable mark at or past the damaged unit.
        assert.ok(openErr, `${at}: damage followed by records marked durable past it must be WAL_CORRUPT, not a repair`)
      }
      if (wal) {
        repaired++
        const r = await drain(wal, n % 3 === 0 ? 'sync' : n % 3 === 1 ? 'entries' : 'batches', b.units)
        assert.is(r.err, undefined, `${at}: replay after the repair`)
        assert.equal(r.got, b.units.slice(0, unit).map(plainUnit), `${at}: everything before the damaged unit is kept, nothing from it on`)
        assert.ok(wal.recovery.truncatedBytes > 0, `${at}: the repair is reported`)
        assert.ok(fs.readFileSync(join(dir, last)).subarray(0, b.units[unit].start).equals(bytes.subarray(0, b.units[unit].start)), `${at}: kept bytes untouched`)
        const lsn = await wal.append({ type: 'put', key: 'k', value: 'after repair' })
        assert.ok(lsn > b.units[unit - 1].last, `${at}: append after repair`)
        await wal.close()
      } else {
        corrupt++
        assert.instance(openErr, WalError, `${at}: ${String(openErr)}`)
        const e = openErr as WalError
        assert.is(e.code, 'WAL_CORRUPT', `${at}: code (${e.message})`)
        assert.is(e.segment, last, `${at}: names the segment`)
        assert.type(e.offset, 'number', `${at}: has an offset`)
        assert.ok(e.offset! >= rec[0] && e.offset! < rec[1], `${at}: offset ${e.offset} inside the damaged record [${rec[0]}, ${rec[1]})`)
        assert.ok(e.message.includes(last) && e.message.includes(String(e.offset)), `${at}: the message names segment and offset`)
        assertSameFiles(before, snapshot(dir), `${at}: WAL_CORRUPT leaves every file as it was`)
        // The failed open released the lock: the same answer again, not WAL_LOCKED.
        const again = await expectWalError(WriteAheadLog.open(dir, opts), 'WAL_CORRUPT', `${at}: second open`)
        assert.is(again.offset, e.offset, `${at}: same offset the second time`)
        assertSameFiles(before, snapshot(dir), `${at}: still untouched`)
        if (unit >= 0) {
          // point-in-time keeps exactly what precedes the damage and never reuses a seen LSN.
          const pit = await WriteAheadLog.open(dir, { ...opts, recovery: 'point-in-time' })
          assert.equal(await replayAll(pit), b.units.slice(0, unit).map(plainUnit), `${at}: point-in-time keeps the prefix`)
          const lsn = await pit.append({ type: 'put', key: 'k', value: 'after pit' })
          assert.ok(lsn > b.units[lastUnit].last, `${at}: point-in-time: new LSN ${lsn} above every LSN seen (${b.units[lastUnit].last})`)
          await pit.close()
        }
      }
      fs.rmSync(dir, { recursive: true, force: true })
    }
    assert.ok(repaired > 5 && corrupt > 5, `both outcomes exercised (repaired ${repaired}, corrupt ${corrupt})`)
  })

  test(`${backend}: single-bit flips in an older segment: WAL_CORRUPT during replay, never silent skipping`, async () => {
    const b = await build(backend, backend === 'native' ? 41 : 42)
    const old = b.segs[0]
    const lastSeg = b.segs[b.segs.length - 1]
    const bytes = fs.readFileSync(join(b.dir, old))
    const rand = prng(backend === 'native' ? 4041 : 4042)
    const lastSegUnits = b.units.filter((u) => u.seg === lastSeg).map(plainUnit)
    const FLIPS = 50
    for (let n = 0; n < FLIPS; n++) {
      const off = rand() % bytes.length
      const bit = rand() % 8
      const at = `${backend}, flip bit ${bit} of byte ${off} in ${old}`
      const { unit, rec } = locate(b, old, off)
      const dir = tmpDir('flip-old')
      copyDir(b.dir, dir)
      const flipped = Buffer.from(bytes)
      flipped[off] ^= 1 << bit
      fs.writeFileSync(join(dir, old), flipped)
      const before = snapshot(dir)

      for (const readOnly of [false, true]) {
        const wal = await WriteAheadLog.open(dir, { backend, preallocate: false, segmentSize: SEGMENT_SIZE, readOnly })
        const how = (['batches', 'entries', 'sync'] as const)[n % 3]
        const r = await drain(wal, how, b.units)
        const idx = assertTruthful(r.got, b.units, `${at} (${how})`)
        assert.ok(idx.every((i, k) => i === k), `${at}: what was yielded is a prefix of the log`)
        assert.ok(unit < 0 || idx.length <= unit, `${at}: nothing from the damaged unit on`)
        assert.ok(r.err, `${at}: replay ${how} must fail with WAL_CORRUPT, not skip the damage (yielded ${r.got.length} batches)`)
        assert.instance(r.err, WalError, `${at}: ${String(r.err)}`)
        const e = r.err as WalError
        assert.is(e.code, 'WAL_CORRUPT', `${at}: code (${e.message})`)
        assert.is(e.segment, old, `${at}: names the older segment`)
        assert.type(e.offset, 'number')
        assert.ok(e.offset! >= rec[0] && e.offset! < rec[1], `${at}: offset ${e.offset} inside the damaged record [${rec[0]}, ${rec[1]})`)
        // Replay from the last segment on does not read the damaged one.
        const tail: PlainBatch[] = []
        for await (const x of wal.replayBatches({ from: b.units.find((u) => u.seg === lastSeg)!.first })) tail.push(plainBatch(x))
        assert.equal(tail, lastSegUnits, `${at}: replay from a later segment`)
        await wal.close()
      }
      assertSameFiles(before, snapshot(dir), `${at}: the older segment is never modified`)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
}

test.run()
