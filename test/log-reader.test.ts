// The log reader (lib/log-reader.ts) walks the segments in order and checks that each one
// continues where the one before it ended. A segment missing in the middle, or a first
// segment whose predecessor no checkpoint released, is WAL_CORRUPT naming the segment;
// entries a checkpoint deleted are WAL_GONE with firstLsn; segments wholly before `from`
// are not read at all; a file that cannot be read, or is named like a segment but is not
// one, is reported as what it is.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../lib/index.js'
import { BACKENDS, segmentFiles, tmpDir } from './helpers/util.js'
import { collect, rejectsWith, throws, writeSegments } from './helpers/wal.js'

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)
  const opts = { backend, segmentSize: 4096, preallocate: false } as const

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

  // Each segment must continue at the LSN where the one before it ended (its header's
  // prevLsn): a hole in the middle is reported, never skipped.
  t('a segment missing in the middle is WAL_CORRUPT naming the segment after the hole', async () => {
    const dir = writeSegments(backend, 80)
    const segs = segmentFiles(dir)
    assert.ok(segs.length >= 4)
    fs.unlinkSync(join(dir, segs[1]))
    const wal = await WriteAheadLog.open(dir, opts)
    const err = await rejectsWith(collect(wal.replay({ from: 0 })), 'WAL_CORRUPT')
    assert.is(err.segment, segs[2])
    throws(() => [...wal.replaySync({ from: 0 })], 'WAL_CORRUPT')
    await wal.close()
  })

  // The first segment must continue where the log was checkpointed away: without it the
  // log has a hole at its start, not a later start.
  t('a first segment removed without a checkpoint is WAL_CORRUPT, not a later start', async () => {
    const dir = writeSegments(backend, 80)
    const segs = segmentFiles(dir)
    fs.unlinkSync(join(dir, segs[0]))
    const wal = await WriteAheadLog.open(dir, opts)
    const err = await rejectsWith(collect(wal.replay()), 'WAL_CORRUPT')
    assert.is(err.segment, segs[1])
    await wal.close()
  })

  // Entries a checkpoint deleted are gone, and replay says so rather than start later.
  t('replay({ from }) below firstLsn after a checkpoint deleted it is WAL_GONE with firstLsn', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, opts)
    for (let i = 1; i <= 80; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v'.repeat(200) })
    assert.is(wal.firstLsn, 1)
    await wal.checkpoint(60)
    assert.ok(wal.firstLsn > 1 && wal.firstLsn <= 61, `firstLsn ${wal.firstLsn}`)
    const err = await rejectsWith(collect(wal.replay({ from: 1 })), 'WAL_GONE')
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

  // A segment that cannot be read is WAL_IO with a hint that fits a read; a file named
  // like a segment that is not one is WAL_CORRUPT saying what it is.
  t('read errors during replay are WalErrors; a foreign file named like a segment says what it is', async () => {
    const dir = writeSegments(backend, 40)
    const segs = segmentFiles(dir)
    const wal = await WriteAheadLog.open(dir, opts)
    // A directory named like a middle segment.
    const mid = segs[1]
    fs.renameSync(join(dir, mid), join(dir, 'moved'))
    fs.mkdirSync(join(dir, mid))
    const err = await rejectsWith(collect(wal.replay({ from: 0 })), 'WAL_IO')
    assert.match(err.message, /replay/)
    // The hint fits a read (the log goes on), not a failed write.
    assert.not.match(err.message, /refuses further appends/)
    assert.match(err.message, /log was not changed/)
    fs.rmdirSync(join(dir, mid))
    fs.writeFileSync(join(dir, mid), 'hello, this is not a segment but it is long enough to hold a header')
    const foreign = await rejectsWith(collect(wal.replay({ from: 0 })), 'WAL_CORRUPT')
    assert.is(foreign.segment, mid)
    assert.match(foreign.message, /not a fastwal segment/)
    assert.not.match(foreign.message, /acknowledged as durable/)
    await wal.close()
  })
}

test.run()
