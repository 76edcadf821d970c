// One writer per directory: a second writable open, in this process or another, fails at
// once with WAL_LOCKED; close or the holder's death frees the lock; readOnly opens never
// take it and work alongside a writer.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import * as fs from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../../lib/index.js'
import { BACKENDS, tmpDir, type BackendName } from '../helpers/util.js'
import { expectWalError, snapshot, assertSameFiles } from './common.js'

const ROOT = resolve(__dirname, '../..')
const HOLDER = join(__dirname, 'fixtures', 'lock-holder.ts')
const AT_ONCE_MS = 1000 // "at once": no waiting for the holder (generous for a loaded CI box)
const SEG = { segmentSize: 65536 } // small preallocation, like the child's

type Line = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

class Child {
  readonly proc: ChildProcessWithoutNullStreams
  private buf = ''
  private lines: Line[] = []
  private waiting: ((l: Line) => void) | undefined
  readonly exited: Promise<{ code: number | null; signal: string | null }>
  stderr = ''

  constructor(args: Record<string, unknown>) {
    this.proc = spawn(process.execPath, ['-r', 'tsx/cjs', HOLDER, JSON.stringify(args)], { cwd: ROOT })
    this.proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      this.buf += d
      let i: number
      while ((i = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(JSON.parse(this.buf.slice(0, i)))
        this.buf = this.buf.slice(i + 1)
      }
      this.deliver()
    })
    this.proc.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr += d))
    this.exited = new Promise((done) => this.proc.on('close', (code, signal) => done({ code, signal })))
  }

  private deliver(): void {
    if (this.waiting && this.lines.length) {
      const w = this.waiting
      this.waiting = undefined
      w(this.lines.shift()!)
    }
  }

  next(): Promise<Line> {
    return new Promise((done, fail) => {
      const t = setTimeout(() => fail(new Error(`child said nothing for 15 s; stderr: ${this.stderr.slice(-2000)}`)), 15000)
      this.waiting = (l) => {
        clearTimeout(t)
        if (l.crashed) fail(new Error(`child crashed: ${l.crashed}`))
        else done(l)
      }
      this.deliver()
    })
  }

  send(cmd: string): void {
    this.proc.stdin.write(cmd + '\n')
  }

  async end(): Promise<void> {
    this.proc.stdin.end()
    await this.exited
  }
}

async function tryInChild(dir: string, backend: BackendName): Promise<Line> {
  const c = new Child({ dir, backend, action: 'try' })
  const l = await c.next()
  await c.exited
  return l
}

async function entries(wal: WriteAheadLog): Promise<string[]> {
  const out: string[] = []
  for await (const e of wal.replay({ from: 0 })) out.push(`${e.lsn}:${e.key.toString()}`)
  return out
}

for (const backend of BACKENDS) {
  const other: BackendName = backend === 'native' ? 'js' : 'native'

  test(`${backend}: a second writable open in the same process gets WAL_LOCKED (open and openSync, any spelling of the path)`, async () => {
    const dir = tmpDir(`lock-${backend}`)
    const wal = await WriteAheadLog.open(dir, { ...SEG, backend })
    await wal.append({ type: 'put', key: 'a', value: '1' })
    assert.ok(fs.existsSync(join(dir, 'LOCK')), 'the lock file is DIR/LOCK')
    const link = `${dir}-link`
    fs.symlinkSync(dir, link)
    const spellings = [dir, `${dir}/`, `${dir}/../${dir.split('/').pop()}`, relative(process.cwd(), dir), link]
    const before = snapshot(dir)
    for (const p of spellings) {
      for (const b of [backend, other]) {
        const e = await expectWalError(WriteAheadLog.open(p, { ...SEG, backend: b }), 'WAL_LOCKED', `open(${p}, ${b})`)
        assert.ok(e.message.length > 20, 'the message says what to do')
        await expectWalError(() => WriteAheadLog.openSync(p, { ...SEG, backend: b }), 'WAL_LOCKED', `openSync(${p}, ${b})`)
      }
    }
    assertSameFiles(before, snapshot(dir), 'refused opens modify nothing')
    // The holder is unaffected by the refused attempts.
    const lsn = await wal.append({ type: 'put', key: 'b', value: '2' })
    assert.is(lsn, 2)
    await wal.close()
    await wal.close() // idempotent

    const again = WriteAheadLog.openSync(dir, { ...SEG, backend: other })
    assert.equal(await entries(again), ['1:a', '2:b'], 'free after close')
    await expectWalError(WriteAheadLog.open(link, { ...SEG, backend }), 'WAL_LOCKED', 'locked again while the new holder is open')
    again.closeSync()
    const third = await WriteAheadLog.open(link, { ...SEG, backend })
    assert.equal(await entries(third), ['1:a', '2:b'], 'free after closeSync')
    await third.close()
  })

  test(`${backend}: another process gets WAL_LOCKED at once while this one holds the lock, and succeeds after close`, async () => {
    const dir = tmpDir(`lock-xp-${backend}`)
    const wal = await WriteAheadLog.open(dir, { ...SEG, backend })
    await wal.append({ type: 'put', key: 'mine', value: 'x' })
    const r = await tryInChild(dir, backend)
    assert.is(r.code, 'WAL_LOCKED', `child open: ${JSON.stringify(r)}`)
    assert.ok(r.ms < AT_ONCE_MS, `WAL_LOCKED came at once (${r.ms} ms)`)
    await wal.close()
    const r2 = await tryInChild(dir, other)
    assert.is(r2.code, 'OK', `child open after close: ${JSON.stringify(r2)}`)
  })

  test(`${backend}: while another process holds the lock: WAL_LOCKED at once, readOnly works alongside, SIGKILL frees it`, async () => {
    const dir = tmpDir(`lock-kill-${backend}`)
    const holder = new Child({ dir, backend, action: 'hold', entries: 5 })
    try {
      const held = await holder.next()
      assert.is(held.held, 5, `holder is ready: ${JSON.stringify(held)}`)
      for (const b of [backend, other]) {
        const t = Date.now()
        await expectWalError(WriteAheadLog.open(dir, { ...SEG, backend: b }), 'WAL_LOCKED', `open while held (${b})`)
        await expectWalError(() => WriteAheadLog.openSync(dir, { ...SEG, backend: b }), 'WAL_LOCKED', `openSync while held (${b})`)
        assert.ok(Date.now() - t < AT_ONCE_MS, 'refused at once')
      }
      // readOnly never takes the lock: it reads what the holder made durable.
      const ro = await WriteAheadLog.open(dir, { backend, readOnly: true })
      const want = [0, 1, 2, 3, 4].map((i) => `${i + 1}:held-${i}`)
      assert.equal(await entries(ro), want, 'readOnly replay alongside the writer')
      await expectWalError(ro.append({ type: 'put', key: 'k', value: 'v' }), 'WAL_READ_ONLY', 'readOnly append')
      await expectWalError(() => ro.appendSync({ type: 'put', key: 'k', value: 'v' }), 'WAL_READ_ONLY', 'readOnly appendSync')
      await expectWalError(ro.sync(), 'WAL_READ_ONLY', 'readOnly sync')
      await expectWalError(ro.checkpoint(1), 'WAL_READ_ONLY', 'readOnly checkpoint')
      // A second readOnly view at the same time, with the other backend.
      const ro2 = WriteAheadLog.openSync(dir, { backend: other, readOnly: true })
      assert.equal(await entries(ro2), want)
      ro2.closeSync()
      await ro.close()

      holder.proc.kill('SIGKILL')
      const ex = await holder.exited
      assert.is(ex.signal, 'SIGKILL')
      const t = Date.now()
      const wal = await WriteAheadLog.open(dir, { ...SEG, backend })
      assert.ok(Date.now() - t < AT_ONCE_MS, 'the dead holder’s lock is free at once')
      assert.equal(await entries(wal), want, 'the killed holder’s acknowledged appends are there')
      assert.is(await wal.append({ type: 'put', key: 'next', value: '' }), 6)
      await wal.close()
    } finally {
      holder.proc.kill('SIGKILL')
    }
  })

  test(`${backend}: close() frees the lock while the holder process lives on; it is refused again once another holds it`, async () => {
    const dir = tmpDir(`lock-close-${backend}`)
    const holder = new Child({ dir, backend, action: 'hold', entries: 1 })
    try {
      assert.is((await holder.next()).held, 1)
      await expectWalError(WriteAheadLog.open(dir, { ...SEG, backend: other }), 'WAL_LOCKED', 'while held')
      holder.send('close')
      assert.equal(await holder.next(), { closed: true })
      const wal = await WriteAheadLog.open(dir, { ...SEG, backend: other })
      holder.send('reopen')
      const re = await holder.next()
      assert.is(re.reopen, 'WAL_LOCKED', `the old holder cannot take it back: ${JSON.stringify(re)}`)
      assert.ok(re.ms < AT_ONCE_MS, `at once (${re.ms} ms)`)
      await wal.close()
      holder.send('reopen')
      assert.is((await holder.next()).reopen, 'OK', 'free again after close')
      await holder.end()
      assert.is((await holder.exited).code, 0)
    } finally {
      holder.proc.kill('SIGKILL')
    }
  })

  test(`${backend}: readOnly opens never lock: a writer in another process opens alongside, and nothing is created`, async () => {
    const dir = tmpDir(`lock-ro-${backend}`)
    const w = await WriteAheadLog.open(dir, { ...SEG, backend })
    await w.append({ type: 'put', key: 'k', value: 'v' })
    await w.close()
    fs.rmSync(join(dir, 'LOCK'))
    const before = snapshot(dir)
    const ro = await WriteAheadLog.open(dir, { backend, readOnly: true })
    const roSync = WriteAheadLog.openSync(dir, { backend: other, readOnly: true })
    assert.not.ok(fs.existsSync(join(dir, 'LOCK')), 'readOnly creates no lock file')
    assertSameFiles(before, snapshot(dir), 'readOnly opens modify nothing')
    const r = await tryInChild(dir, backend)
    assert.is(r.code, 'OK', `writer in another process beside two readOnly opens: ${JSON.stringify(r)}`)
    // And a writer in this process too.
    const wal = await WriteAheadLog.open(dir, { ...SEG, backend })
    assert.equal(await entries(ro), ['1:k'])
    await wal.append({ type: 'put', key: 'k2', value: 'v2' })
    await wal.close()
    await ro.close()
    roSync.closeSync()
  })
}

test.run()
