// Cursors (lib/cursors.ts): a consumer's confirmed position, kept in the log directory and
// shared by every handle and process; checkpoint keeps every segment that holds an entry
// above any cursor's LSN, and drop() releases them.
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError } from '../lib/index.js'
import { BACKENDS, segmentFiles, tmpDir } from './helpers/util.js'

const ROOT = join(__dirname, '..')
const CHILD = join(__dirname, 'fixtures', 'cursor-child.ts')

function inChild(args: { dir: string; backend: string; name: string; confirm?: number; drop?: boolean }): { lsn: number; firstLsn: number } {
  const out = execFileSync(process.execPath, ['-r', 'tsx/cjs', CHILD, JSON.stringify(args)], { cwd: ROOT, encoding: 'utf8' })
  return JSON.parse(out.trim().split('\n').pop()!)
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'resolved'
  } catch (err) {
    assert.instance(err, WalError)
    return (err as WalError).code
  }
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)
  const small = { backend, segmentSize: 4096, preallocate: false } as const

  async function filled(n: number): Promise<WriteAheadLog> {
    const wal = await WriteAheadLog.open(tmpDir(), small)
    for (let i = 0; i < n; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(100) })
    return wal
  }

  t('a cursor holds the segments above its LSN across checkpoint; confirm releases them; drop releases all', async () => {
    const wal = await filled(300)
    const c = await wal.cursor('projection')
    assert.is(c.name, 'projection')
    assert.is(c.lsn, 0, 'a new cursor starts at firstLsn - 1')
    const before = segmentFiles(wal.dir).length
    await wal.checkpoint(wal.lastLsn)
    assert.is(segmentFiles(wal.dir).length, before, 'checkpoint deleted a segment the cursor needs')
    assert.is(wal.firstLsn, 1)
    for (const e of [...wal.replaySync({ from: 0 })].slice(0, 150)) assert.ok(e.lsn <= 150)
    await c.confirm(150)
    assert.is(c.lsn, 150)
    await wal.checkpoint(wal.lastLsn) // at or below the last checkpoint: still deletes what the cursor released
    assert.ok(wal.firstLsn > 1 && wal.firstLsn <= 151, `firstLsn ${wal.firstLsn}`)
    const kept = [...wal.replaySync({ from: 0 })]
    assert.is(kept[kept.length - 1].lsn, 300)
    assert.ok(kept[0].lsn <= 151)
    await c.drop()
    await wal.checkpoint(wal.lastLsn)
    assert.is(segmentFiles(wal.dir).length, 1)
    assert.is(await code(c.confirm(299)), 'WAL_INVALID', 'confirm after drop')
    await wal.close()
  })

  t('confirm: below the cursor is a no-op, above lastLsn is WAL_INVALID, bad input is WAL_INVALID; names are checked', async () => {
    const wal = await filled(10)
    const c = await wal.cursor('c1')
    await c.confirm(5)
    await c.confirm(3)
    assert.is(c.lsn, 5)
    assert.is(await code(c.confirm(11)), 'WAL_INVALID')
    assert.is(await code(c.confirm(-1)), 'WAL_INVALID')
    assert.is(await code(c.confirm(2.5)), 'WAL_INVALID')
    for (const bad of ['', '../x', 'a/b', '.hidden', 'x'.repeat(200), 'a b'] as string[]) assert.is(await code(wal.cursor(bad)), 'WAL_INVALID', JSON.stringify(bad))
    // Reopened, by name, from disk.
    assert.is((await wal.cursor('c1')).lsn, 5)
    await wal.close()
    assert.is(await code(c.confirm(6)), 'WAL_CLOSED')
    const again = await WriteAheadLog.open(wal.dir, small)
    assert.is((await again.cursor('c1')).lsn, 5)
    await again.close()
  })

  t('a cursor created and confirmed by a readOnly handle in another process holds segments from checkpoint', async () => {
    const wal = await filled(300)
    await wal.close() // the child reads the published durable LSN; reopen after
    const w2 = await WriteAheadLog.open(wal.dir, small)
    const child = inChild({ dir: wal.dir, backend, name: 'remote', confirm: 100 })
    assert.is(child.lsn, 100)
    await w2.checkpoint(w2.lastLsn)
    assert.ok(w2.firstLsn <= 101, `the remote cursor at 100 was ignored: firstLsn ${w2.firstLsn}`)
    assert.ok(w2.firstLsn > 1, 'segments wholly below the cursor are deleted')
    const s = w2.stats()
    const remote = s.cursors.find((c) => c.name === 'remote')
    assert.ok(remote, 'stats() lists a cursor made by another process')
    assert.is(remote!.lsn, 100)
    assert.is(remote!.lagEntries, w2.lastLsn - 100)
    assert.ok(remote!.lagBytes > 0 && remote!.lagBytes <= s.bytesOnDisk)
    const dropped = inChild({ dir: wal.dir, backend, name: 'remote', drop: true })
    assert.is(dropped.lsn, 100)
    await w2.checkpoint(w2.lastLsn)
    assert.is(segmentFiles(wal.dir).length, 1)
    assert.not.ok(fs.readdirSync(wal.dir).some((n) => n.includes('cursor')), 'no cursor file or temporary left')
    await w2.close()
  })
}

test.run()
