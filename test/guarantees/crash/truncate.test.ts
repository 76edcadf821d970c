// Torn tails by truncation: the last segment is cut at every byte offset, and a default
// open must keep exactly the standalone appends and whole batches that end before the cut.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../../../lib/index.js'
import type { Operation } from '../../../lib/options.js'
import { BACKENDS, segmentFiles, tmpDir, type BackendName } from '../../helpers/util.js'
import { HEADER, copyDir, lastNonZero, plainUnit, randomUnits, replayAll, replaySyncEntries, entriesOf, writeUnits, type PlainBatch, type Unit } from './common.js'

const SEGMENT_SIZE = 4096
const LAST_SEGMENT_MIN = 700 // bytes of records wanted in the segment that gets cut

interface Built {
  dir: string
  units: Unit[]
  lastSeg: string
  lastBytes: Buffer
}

async function build(backend: BackendName, seed: number, twoSegments: boolean): Promise<Built> {
  const dir = tmpDir(`trunc-${backend}`)
  const wal = await WriteAheadLog.open(dir, { backend, preallocate: false, segmentSize: SEGMENT_SIZE })
  const specs = randomUnits(seed, 400)
  const units = await writeUnits(wal, dir, specs, {
    useSync: (i) => i % 7 === 3,
    until: (us) => {
      const segs = new Set(us.map((u) => u.seg))
      const last = us[us.length - 1]
      if (!last) return false
      if (!twoSegments) return last.end >= LAST_SEGMENT_MIN
      return segs.size >= 2 && last.end >= LAST_SEGMENT_MIN
    },
  })
  await wal.close()
  const segs = segmentFiles(dir)
  assert.is(segs.length, twoSegments ? 2 : 1)
  const lastSeg = segs[segs.length - 1]
  const lastBytes = fs.readFileSync(join(dir, lastSeg))
  assert.is(lastBytes.length, units[units.length - 1].end, 'preallocate: false leaves no padding')
  assert.ok(units.some((u) => u.seg === lastSeg && u.kind === 'batch') && units.some((u) => u.seg === lastSeg && u.kind === 'one'), 'the cut segment holds both kinds')
  return { dir, units, lastSeg, lastBytes }
}

interface Expectation {
  kept: Unit[]
  keptLast: number // LSN of the last kept unit (0 if none)
  damage: number // offset in the last segment where removal starts, -1 if nothing to remove
  partial?: Unit
}

function expectAt(b: Built, cut: number): Expectation {
  if (cut < HEADER) {
    // Short header: the whole segment is a torn tail.
    const kept = b.units.filter((u) => u.seg !== b.lastSeg)
    return { kept, keptLast: kept.length ? kept[kept.length - 1].last : 0, damage: cut > 0 ? 0 : -1 }
  }
  const kept = b.units.filter((u) => u.seg !== b.lastSeg || u.end <= cut)
  const partial = b.units.find((u) => u.seg === b.lastSeg && u.end > cut)
  const damage = partial && partial.start < cut ? partial.start : -1
  return { kept, keptLast: kept.length ? kept[kept.length - 1].last : 0, damage, partial: damage >= 0 ? partial : undefined }
}

function recordEnds(u: Unit): number[] {
  // End offsets of the op records inside a batch (after its 32-byte BEGIN).
  const ends: number[] = []
  let p = u.start + HEADER
  for (const op of u.ops) {
    p += HEADER + (typeof op.key === 'string' ? Buffer.byteLength(op.key) : op.key.length)
    if (op.type === 'put') p += typeof op.value === 'string' ? Buffer.byteLength(op.value) : op.value.length
    ends.push(p)
  }
  return ends
}

function checkReport(wal: WriteAheadLog, b: Built, cut: number, ex: Expectation, where: string): void {
  const r = wal.recovery
  assert.is(r.mode, 'tolerate-tail', `${where}: mode`)
  if (ex.damage < 0) {
    assert.is(r.truncatedBytes, 0, `${where}: a cut on a record boundary removes nothing`)
    assert.is(r.droppedEntries, 0, `${where}: droppedEntries`)
    assert.is(r.droppedBatches, 0, `${where}: droppedBatches`)
    return
  }
  const cutBuf = b.lastBytes.subarray(0, cut)
  const nonZeroEnd = lastNonZero(cutBuf, ex.damage)
  assert.ok(r.truncatedBytes <= cut - ex.damage, `${where}: truncatedBytes ${r.truncatedBytes} <= ${cut - ex.damage}`)
  assert.ok(r.truncatedBytes >= nonZeroEnd - ex.damage, `${where}: truncatedBytes ${r.truncatedBytes} reports the ${nonZeroEnd - ex.damage} data bytes removed`)
  const u = ex.partial
  if (u && u.kind === 'batch') {
    const whole = recordEnds(u).filter((e) => e <= cut).length
    assert.ok(r.droppedEntries >= whole && r.droppedEntries <= u.ops.length, `${where}: droppedEntries ${r.droppedEntries} (whole op records cut off: ${whole})`)
    assert.is(r.droppedBatches, cut >= u.start + HEADER ? 1 : 0, `${where}: droppedBatches`)
  } else {
    assert.ok(r.droppedEntries <= 1, `${where}: droppedEntries ${r.droppedEntries}`)
    assert.is(r.droppedBatches, 0, `${where}: droppedBatches`)
  }
}

const EXTRA: Operation[][] = [[{ type: 'put', key: 'after', value: 'cut' }], [{ type: 'put', key: 'b1', value: '' }, { type: 'del', key: '' }]]

/**
 * Every offset gets a read-only open, a repairing open, replay and report checks; `full`
 * offsets also append after the repair and reopen strictly with the other backend (more
 * fsyncs, so not at every offset).
 */
async function checkCut(b: Built, backend: BackendName, other: BackendName, cut: number, full: boolean): Promise<void> {
  const where = `${backend} cut at ${cut}/${b.lastBytes.length}`
  const ex = expectAt(b, cut)
  const want = ex.kept.map(plainUnit)
  const dir = tmpDir('cut')
  copyDir(b.dir, dir)
  const lastPath = join(dir, b.lastSeg)
  fs.writeFileSync(lastPath, b.lastBytes.subarray(0, cut))
  const olderBefore = segmentFiles(dir).filter((n) => n < b.lastSeg).map((n) => fs.readFileSync(join(dir, n)))

  // A read-only open tolerates the torn tail, skips it and modifies nothing.
  const ro = await WriteAheadLog.open(dir, { backend, readOnly: true })
  assert.equal(await replayAll(ro), want, `${where}: readOnly replay`)
  await ro.close()
  assert.ok(fs.readFileSync(lastPath).equals(b.lastBytes.subarray(0, cut)), `${where}: readOnly left the file alone`)

  const opts = { backend, preallocate: false, segmentSize: SEGMENT_SIZE } as const
  const wal = cut % 3 === 0 ? WriteAheadLog.openSync(dir, opts) : await WriteAheadLog.open(dir, opts)
  checkReport(wal, b, cut, ex, where)
  assert.equal(await replayAll(wal), want, `${where}: replay keeps exactly the whole units before the cut`)
  if (cut % 5 === 0) assert.equal(replaySyncEntries(wal), entriesOf(want), `${where}: replaySync`)
  assert.ok(wal.lastLsn >= ex.keptLast, `${where}: lastLsn ${wal.lastLsn} >= ${ex.keptLast}`)

  // Nothing before the damage was touched.
  // (A repair that drops LSNs continues in a new segment named after the last one.)
  const olderAfter = segmentFiles(dir).filter((n) => n < b.lastSeg).map((n) => fs.readFileSync(join(dir, n)))
  assert.is(olderAfter.length, olderBefore.length, `${where}: older segments kept`)
  olderAfter.forEach((buf, i) => assert.ok(buf.equals(olderBefore[i]), `${where}: older segment ${i} unchanged`))
  if (cut >= HEADER) {
    const keepEnd = ex.damage >= 0 ? ex.damage : cut
    assert.ok(fs.readFileSync(lastPath).subarray(0, keepEnd).equals(b.lastBytes.subarray(0, keepEnd)), `${where}: kept bytes unchanged`)
  }

  if (!full) {
    await wal.close()
    fs.rmSync(dir, { recursive: true, force: true })
    return
  }
  // Appending after the repair works and replays, here and after a strict reopen with the other backend.
  const ops = EXTRA[cut % 2]
  let added: PlainBatch
  if (ops.length === 1) {
    const lsn = await wal.append(ops[0])
    added = plainUnit({ first: lsn, last: lsn, ops })
  } else {
    const r = await wal.appendBatch(ops)
    added = plainUnit({ ...r, ops })
  }
  assert.ok(added.first > ex.keptLast, `${where}: new LSN ${added.first} above the kept ${ex.keptLast}`)
  assert.is(wal.lastLsn, added.last, `${where}: lastLsn after append`)
  assert.is(wal.durableLsn, added.last, `${where}: durableLsn after append`)
  assert.equal(await replayAll(wal), [...want, added], `${where}: replay after append`)
  await wal.close()

  const again = await WriteAheadLog.open(dir, { backend: other, preallocate: false, segmentSize: SEGMENT_SIZE, recovery: 'strict' })
  assert.is(again.recovery.truncatedBytes, 0, `${where}: the repaired log is clean`)
  assert.equal(await replayAll(again), [...want, added], `${where}: strict reopen with the ${other} backend`)
  assert.is(again.lastLsn, added.last, `${where}: lastLsn after reopen`)
  await again.close()
  fs.rmSync(dir, { recursive: true, force: true })
}

for (const backend of BACKENDS) {
  const other: BackendName = backend === 'native' ? 'js' : 'native'

  test(`${backend}: cutting the last of two segments at every byte offset past its header keeps exactly the whole units before the cut`, async () => {
    const b = await build(backend, backend === 'native' ? 101 : 202, true)
    const boundaries = new Set(b.units.filter((u) => u.seg === b.lastSeg).flatMap((u) => [u.start, u.start + 1, u.end - 1]))
    for (let cut = HEADER; cut <= b.lastBytes.length; cut++) await checkCut(b, backend, other, cut, cut % 8 === 0 || boundaries.has(cut) || cut === b.lastBytes.length)
  })

  test(`${backend}: the last of two segments cut inside its header (short header) is a torn tail`, async () => {
    const b = await build(backend, backend === 'native' ? 505 : 606, true)
    for (let cut = 0; cut < HEADER; cut++) await checkCut(b, backend, other, cut, true)
  })

  test(`${backend}: a single-segment log cut inside its header (short header) is a torn tail`, async () => {
    const b = await build(backend, backend === 'native' ? 303 : 404, false)
    for (let cut = 0; cut <= HEADER + 1; cut++) await checkCut(b, backend, other, cut, true)
  })
}

test.run()
