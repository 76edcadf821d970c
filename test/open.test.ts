// Opening a log (lib/open.ts): the directory is resolved once, at open, so a later
// process.chdir() does not move the log; an open that fails releases every file descriptor
// it opened, and the lock.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError } from '../lib/index.js'
import { jsBackend } from '../lib/js-backend.js'
import { loadAddon } from '../lib/native-addon.js'
import { BACKENDS, segmentFiles, tmpDir } from './helpers/util.js'
import { openFails, writeLog } from './helpers/wal.js'

async function collectAll(wal: WriteAheadLog): Promise<{ lsn: number }[]> {
  const out: { lsn: number }[] = []
  for await (const e of wal.replay({ from: 0 })) out.push(e)
  return out
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)

  t('an async open of an existing log syncs its tail on the thread pool, never with a blocking fdatasync on the event loop', async () => {
    const dir = tmpDir()
    const w = await WriteAheadLog.open(dir, { backend })
    for (let i = 0; i < 10; i++) await w.append({ type: 'put', key: `k${i}`, value: 'v' })
    await w.close()
    const target = (backend === 'js' ? jsBackend : loadAddon().addon!) as { fdatasyncBlocking: (fd: number) => void }
    const original = target.fdatasyncBlocking
    let blocking = 0
    target.fdatasyncBlocking = (fd: number) => {
      blocking++
      original(fd)
    }
    try {
      const wal = await WriteAheadLog.open(dir, { backend })
      assert.is(blocking, 0, 'no blocking fdatasync during open()')
      assert.is(wal.durableLsn, 10)
      await wal.close()
      const sync = WriteAheadLog.openSync(dir, { backend })
      assert.ok(blocking > 0, 'openSync syncs the tail on the calling thread (the counter works)')
      sync.closeSync()
    } finally {
      target.fdatasyncBlocking = original
    }
  })

  t('an async open of a new log creates its first segment and its id on the thread pool: no blocking write, fdatasync or fsync on the event loop', async () => {
    // lib/ holds node:fs's own module object: patching it here is seen there.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const realFs = require('node:fs') as Record<string, unknown>
    const target = (backend === 'js' ? jsBackend : loadAddon().addon!) as unknown as Record<string, unknown>
    const calls: string[] = []
    const spied: [Record<string, unknown>, string, unknown][] = []
    const spy = (obj: Record<string, unknown>, name: string) => {
      const original = obj[name] as (...a: unknown[]) => unknown
      spied.push([obj, name, original])
      obj[name] = function (this: unknown, ...a: unknown[]) {
        calls.push(name)
        return original.apply(this, a)
      }
    }
    for (const name of ['fsyncSync', 'fdatasyncSync']) spy(realFs, name)
    for (const name of ['fdatasyncBlocking', 'writeBlocking']) spy(target, name)
    let wal: WriteAheadLog | undefined
    try {
      wal = await WriteAheadLog.open(join(tmpDir(), 'new'), { backend })
      assert.equal(calls, [], 'no blocking write or sync during open() of a new log')
      assert.is(segmentFiles(wal.dir).length, 1)
      assert.match(fs.readFileSync(join(wal.dir, 'LOGID'), 'utf8'), /^[0-9a-f]{32}\n$/)
      await wal.append({ type: 'put', key: 'k', value: 'v' })
      await wal.close()
      const sync = WriteAheadLog.openSync(join(tmpDir(), 'new-sync'), { backend })
      assert.ok(calls.length > 0, 'openSync of a new log does them on the calling thread (the spies work)')
      sync.closeSync()
    } finally {
      for (const [obj, name, original] of spied) obj[name] = original
    }
    const again = await WriteAheadLog.open(wal!.dir, { backend })
    assert.equal((await collectAll(again)).map((e) => e.lsn), [1])
    await again.close()
  })

  // A relative path is resolved once, at open: segments created later go to the same
  // directory whatever the working directory is by then.
  t('a relative dir is resolved at open: process.chdir() later does not move the log', async () => {
    const base = tmpDir()
    const first = join(base, 'first')
    const second = join(base, 'second')
    fs.mkdirSync(first, { recursive: true })
    fs.mkdirSync(second, { recursive: true })
    const cwd = process.cwd()
    let wal: WriteAheadLog | undefined
    try {
      process.chdir(first)
      wal = await WriteAheadLog.open('log', { backend, segmentSize: 4096, preallocate: false })
      process.chdir(second)
      for (let i = 0; i < 60; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v'.repeat(200) }) // rotates
      assert.is(wal.dir, join(first, 'log'))
    } finally {
      process.chdir(cwd)
    }
    await wal.close()
    assert.ok(segmentFiles(join(first, 'log')).length > 1)
    assert.not.ok(fs.existsSync(join(second, 'log')))
  })
}

// A failed open (or a failed segment creation) releases every fd it opened.
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

test.run()
