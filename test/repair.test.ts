// Repair (lib/repair.ts): a repair that drops LSNs first makes a new segment durable, named
// above every LSN seen, then cuts the damaged one. When a crash interrupts it, the next open
// finishes it, a strict open refuses to and changes nothing, a readOnly open reads around
// it, and no LSN is handed out twice. An empty last segment that is merely out of place is
// WAL_CORRUPT, never taken for the new segment of an interrupted repair.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { crc32cJs } from '../lib/crc32c.js'
import { encodeSegmentHeader, segmentName } from '../lib/format.js'
import { WriteAheadLog, WalError } from '../lib/index.js'
import { BACKENDS, segmentFiles, tmpDir } from './helpers/util.js'
import { openFails, writeLog } from './helpers/wal.js'

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void> | void) => test(`[${backend}] ${name}`, fn)
  const base = { backend, preallocate: false } as const

  // An empty segment out of place must not be taken for the new segment of an interrupted repair.
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

  // A torn-tail repair interrupted after its new segment was made durable, before the cut.
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

test.run()
