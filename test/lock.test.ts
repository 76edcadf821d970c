// One writer per directory: a second writable open, in this process or another, fails at
// once with WAL_LOCKED; close or the holder's death frees the lock; readOnly opens never
// take it and work alongside a writer. The lock holds with and without the native addon
// (and between a process with it and one without), across two copies of the package in one
// process, against simultaneous opens, and whatever happens to the LOCK file meanwhile.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import { join, relative, resolve } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, type WalError } from '../lib/index.js'
import { acquireLock, canUseAbstractSockets, nodeBindsAbstractNames } from '../lib/lock.js'
import { loadAddon } from '../lib/native-addon.js'
import { BACKENDS, tmpDir, type BackendName } from './helpers/util.js'
import { expectWalError, snapshot, assertSameFiles } from './guarantees/crash/common.js'

const ROOT = resolve(__dirname, '..')
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

  constructor(args: Record<string, unknown> | string[], env?: NodeJS.ProcessEnv) {
    const argv = Array.isArray(args) ? args : [HOLDER, JSON.stringify(args)]
    this.proc = spawn(process.execPath, ['-r', 'tsx/cjs', ...argv], { cwd: ROOT, env: env ?? process.env })
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

async function tryInChild(dir: string, backend: BackendName, env?: NodeJS.ProcessEnv): Promise<Line> {
  const c = new Child({ dir, backend, action: 'try' }, env)
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

// --- Exclusion that does not rest on the LOCK file, with and without the addon --------------
//
// Other processes are drivers (below), started once and shared by the tests: A1 and A2 load
// the addon, N1 and N2 cannot (FASTWAL_NATIVE_DIR at an empty directory, as after a broken
// install; see test/packaging/fallback.test.ts), so they use the 'js' backend.

const NO_ADDON_DIR = fs.mkdtempSync(join(os.tmpdir(), 'fastwal-no-addon-'))
process.on('exit', () => fs.rmSync(NO_ADDON_DIR, { recursive: true, force: true }))
const NO_ADDON: NodeJS.ProcessEnv = { ...process.env, FASTWAL_NATIVE_DIR: NO_ADDON_DIR }
const fdCount = () => fs.readdirSync('/proc/self/fd').length
/** When this process started, as lib/lock.ts writes it into LOCK. */
const PROCESS_START = Math.round(Date.now() - process.uptime() * 1000)

// A child obeying one JSON command per stdin line, answering one JSON line each. It can load
// the package a second time (a second copy: every lib/ module evaluated afresh) and take the
// lock through WriteAheadLog or through lib/lock.ts (whose test-only second argument makes it
// act as on another platform or without the addon). 'at' is a wall-clock instant (ms) it
// spins until, so that two drivers act at the same moment.
const DRIVER = `
const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')
const LIB = path.join(process.env.T_ROOT, 'lib') + path.sep
function load() {
  for (const k of Object.keys(require.cache)) if (k.startsWith(LIB)) delete require.cache[k]
  return { index: require(LIB + 'index.ts'), lock: require(LIB + 'lock.ts'), native: require(LIB + 'native-addon.ts') }
}
const copies = [load()]
const held = new Map()
const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n')
const now = () => performance.timeOrigin + performance.now()
const codeOf = (e) => (e && e.name === 'WalError' ? e.code : String((e && e.stack) || e))
let queue = Promise.resolve()
readline.createInterface({ input: process.stdin }).on('line', (line) => { queue = queue.then(() => run(JSON.parse(line))) })
async function run(c) {
  try {
    const copy = copies[c.copy || 0]
    if (c.op === 'copy') {
      copies.push(load())
      return say({ copy: copies.length - 1, distinct: copies[0].index.WriteAheadLog !== copies[copies.length - 1].index.WriteAheadLog })
    }
    if (c.op === 'fds') return say({ fds: fs.readdirSync('/proc/self/fd').length })
    if (c.op === 'open' || c.op === 'lock') {
      const late = c.at ? now() > c.at : false
      if (c.at) while (now() < c.at);
      try {
        let h
        if (c.op === 'lock') h = copy.lock.acquireLock(c.dir, { platform: c.platform, addon: c.addon ? copy.native.loadAddon().addon : null })
        else if (c.sync) h = copy.index.WriteAheadLog.openSync(c.dir, { backend: c.backend, segmentSize: 65536 })
        else h = await copy.index.WriteAheadLog.open(c.dir, { backend: c.backend, segmentSize: 65536 })
        held.set(c.id, h)
        return say({ code: 'OK', late })
      } catch (e) {
        return say({ code: codeOf(e), message: e.message, late })
      }
    }
    if (c.op === 'close') {
      const h = held.get(c.id)
      held.delete(c.id)
      if (h.release) h.release()
      else if (c.sync) h.closeSync()
      else await h.close()
      return say({ closed: true })
    }
    say({ crashed: 'unknown command ' + JSON.stringify(c) })
  } catch (e) {
    say({ crashed: String(e.stack || e) })
  }
}
`

class Driver extends Child {
  readonly backend: BackendName
  constructor(readonly addon: boolean) {
    super(['-e', DRIVER], { ...(addon ? process.env : NO_ADDON), T_ROOT: ROOT })
    this.backend = addon ? 'native' : 'js'
  }
  async cmd(c: Record<string, unknown>): Promise<Line> {
    this.send(JSON.stringify(c))
    return this.next()
  }
  /** A writable open of `dir` by this process. */
  open(dir: string, id = 'x', more: Record<string, unknown> = {}): Promise<Line> {
    return this.cmd({ op: 'open', id, dir, backend: this.backend, ...more })
  }
  close(id = 'x'): Promise<Line> {
    return this.cmd({ op: 'close', id })
  }
}

const pool = new Map<string, Driver>()
function driver(name: 'A1' | 'A2' | 'N1' | 'N2'): Driver {
  let d = pool.get(name)
  if (!d) pool.set(name, (d = new Driver(name.startsWith('A'))))
  return d
}
test.after(async () => {
  const all = [...pool.values()]
  pool.clear()
  for (const d of all) d.proc.kill('SIGKILL')
  await Promise.all(all.map((d) => d.exited))
})

/** Two drivers try to take `dir` at the same instant, `rounds` times: exactly one wins. */
async function race(a: Driver, b: Driver, rounds: number, attempt: (at: number) => Record<string, unknown>, prepare?: () => void): Promise<void> {
  let late = 0
  let lead = 30 // ms for the command to reach both; longer after a late arrival (a loaded box)
  for (let round = 1; round <= rounds; round++) {
    prepare?.()
    const at = Date.now() + lead
    const [ra, rb] = await Promise.all([a.cmd(attempt(at)), b.cmd(attempt(at))])
    if (ra.late || rb.late) {
      late++
      lead = Math.min(lead * 2, 500)
    }
    for (const [d, r] of [[a, ra], [b, rb]] as const) if (r.code === 'OK') assert.equal(await d.cmd({ op: 'close', id: 'race', sync: true }), { closed: true })
    const codes = [ra.code, rb.code].sort()
    assert.equal(codes, ['OK', 'WAL_LOCKED'], `round ${round}: exactly one of two simultaneous attempts wins (got ${JSON.stringify([ra, rb])})`)
  }
  assert.ok(late <= rounds / 2, `the two started together in most rounds (${late} of ${rounds} late)`)
}

for (const [name, x, y] of [
  ['both with the addon', 'A1', 'A2'],
  ['both without the addon', 'N1', 'N2'],
  ['one with, one without the addon', 'A1', 'N1'],
] as const) {
  test(`race: two processes open one directory writable at the same instant, 20 rounds: exactly one wins each round (${name})`, async () => {
    for (const n of ['A1', 'A2', 'N1', 'N2'] as const) driver(n) // start them all at once
    const a = driver(x)
    const b = driver(y)
    const dir = tmpDir('lock-race')
    // Warm up (module loading, JIT), so that the race starts level.
    for (const d of [a, b]) {
      assert.is((await d.open(dir, 'w', { sync: true })).code, 'OK')
      await d.close('w')
    }
    await race(a, b, 20, (at) => ({ op: 'open', id: 'race', dir, backend: 'js', sync: true, at }))
  })
}

for (const [mode, name] of [['addon', 'A2'], ['no addon', 'N2']] as const) {
  test(`${mode}: two copies of the package in one process exclude each other`, async () => {
    const dir = tmpDir('lock-copies')
    const d = driver(name)
    const { copy, distinct } = await d.cmd({ op: 'copy' })
    assert.ok(distinct, 'a second copy of every module')
    assert.is((await d.open(dir, 'a', { copy: 0 })).code, 'OK', 'copy 1 opens')
    for (const sync of [false, true]) {
      const r = await d.open(dir, 'b', { copy, sync })
      assert.is(r.code, 'WAL_LOCKED', `copy 2 while copy 1 holds it (${sync ? 'openSync' : 'open'}): ${JSON.stringify(r)}`)
      assert.ok(r.message.includes(dir), `the message names the directory: ${r.message}`)
      assert.ok(r.message.includes('readOnly: true'), `and what to do: ${r.message}`)
    }
    await d.close('a')
    assert.is((await d.open(dir, 'b', { copy, sync: true })).code, 'OK', 'copy 2 opens once copy 1 closed')
    assert.is((await d.open(dir, 'a', { copy: 0 })).code, 'WAL_LOCKED', 'and now copy 1 is refused')
    await d.close('b')
    assert.is((await d.open(dir, 'a', { copy: 0 })).code, 'OK', 'free again')
    await d.close('a')
  })
}

/** What can happen to LOCK while the lock is held. */
const TAMPER = {
  deleting: (dir: string) => fs.rmSync(join(dir, 'LOCK')),
  replacing: (dir: string) => {
    fs.writeFileSync(join(dir, 'LOCK.new'), `${process.pid + 1}\n`)
    fs.renameSync(join(dir, 'LOCK.new'), join(dir, 'LOCK'))
  },
}

for (const [how, tamper] of Object.entries(TAMPER)) {
  test(`addon: ${how} LOCK while held lets no second writer in (this process, other processes with and without the addon)`, async () => {
    const dir = tmpDir(`lock-${how}`)
    const wal = await WriteAheadLog.open(dir, { ...SEG, backend: 'native' })
    tamper(dir)
    for (const b of BACKENDS) {
      await expectWalError(WriteAheadLog.open(dir, { ...SEG, backend: b }), 'WAL_LOCKED', `open in this process (${b})`)
      await expectWalError(() => WriteAheadLog.openSync(dir, { ...SEG, backend: b }), 'WAL_LOCKED', `openSync in this process (${b})`)
    }
    const [withAddon, withoutAddon] = await Promise.all([driver('A1').open(dir), driver('N1').open(dir)])
    assert.is(withAddon.code, 'WAL_LOCKED', `another process with the addon: ${JSON.stringify(withAddon)}`)
    assert.is(withoutAddon.code, 'WAL_LOCKED', `another process without the addon: ${JSON.stringify(withoutAddon)}`)
    assert.is(await wal.append({ type: 'put', key: 'k', value: 'v' }), 1, 'the holder goes on')
    await wal.close()
    assert.is((await driver('N1').open(dir)).code, 'OK', 'free after close')
    await driver('N1').close()
  })

  test(`no addon: ${how} LOCK while held lets no second writer in (the holder's process, other processes with and without the addon)`, async () => {
    const dir = tmpDir(`lock-${how}-js`)
    const holder = driver('N2')
    assert.is((await holder.open(dir, 'h')).code, 'OK')
    tamper(dir)
    const same = await holder.open(dir, 'h2')
    assert.is(same.code, 'WAL_LOCKED', `a second open in the holder's process: ${JSON.stringify(same)}`)
    const [other, withAddon] = await Promise.all([driver('N1').open(dir), driver('A1').open(dir)])
    assert.is(other.code, 'WAL_LOCKED', `another process without the addon: ${JSON.stringify(other)}`)
    assert.is(withAddon.code, 'WAL_LOCKED', `another process with the addon: ${JSON.stringify(withAddon)}`)
    await expectWalError(WriteAheadLog.open(dir, { ...SEG, backend: 'native' }), 'WAL_LOCKED', 'this process, with the addon')
    await expectWalError(() => WriteAheadLog.openSync(dir, { ...SEG, backend: 'js' }), 'WAL_LOCKED', 'this process, with the addon (openSync)')
    await holder.close('h')
    const wal = WriteAheadLog.openSync(dir, { ...SEG, backend: 'native' })
    wal.closeSync()
  })
}

test('no addon: while a holder without the addon lives, WAL_LOCKED at once; SIGKILL frees it at once (no stale lock)', async () => {
  const dir = tmpDir('lock-kill-js')
  const holder = new Child({ dir, backend: 'js', action: 'hold', entries: 2 }, NO_ADDON)
  try {
    assert.is((await holder.next()).held, 2)
    const t = Date.now()
    await expectWalError(WriteAheadLog.open(dir, { ...SEG, backend: 'native' }), 'WAL_LOCKED', 'while held')
    assert.ok(Date.now() - t < AT_ONCE_MS, 'at once')
    assert.is((await driver('N1').open(dir)).code, 'WAL_LOCKED', 'while held, for a process without the addon')
    holder.proc.kill('SIGKILL')
    assert.is((await holder.exited).signal, 'SIGKILL')
    const t2 = Date.now()
    const r = await driver('N1').open(dir)
    assert.is(r.code, 'OK', `a process without the addon, after the kill: ${JSON.stringify(r)}`)
    assert.ok(Date.now() - t2 < AT_ONCE_MS, 'at once')
    await driver('N1').close()
    const wal = WriteAheadLog.openSync(dir, { ...SEG, backend: 'native' })
    assert.equal(await entries(wal), ['1:held-0', '2:held-1'])
    wal.closeSync()
  } finally {
    holder.proc.kill('SIGKILL')
  }
})

if (process.platform === 'linux') {
  test('the abstract name is held under both addresses a Node may bind (exact and NUL-padded) by a writer with the addon, under the one node:net binds by a writer without it; freed on close', () => {
    const addon = loadAddon().addon!
    for (const backend of ['native', 'js'] as const) {
      const dir = tmpDir(`lock-abstract-${backend}`)
      WriteAheadLog.openSync(dir, { ...SEG, backend }).closeSync()
      const st = fs.statSync(dir, { bigint: true })
      const exact = Buffer.from(`\0fastwal-lock:${st.dev}:${st.ino}`, 'latin1')
      const padded = Buffer.alloc(108)
      exact.copy(padded)
      const tryBind = (address: Buffer): boolean => {
        const fd = addon.bindAbstract(address)
        if (fd >= 0) fs.closeSync(fd)
        return fd >= 0
      }
      // A writer without the addon binds through node:net; emulate one by taking the lock as it would.
      const lock = backend === 'native' ? acquireLock(dir) : acquireLock(dir, { addon: null })
      try {
        if (backend === 'native') assert.equal([tryBind(exact), tryBind(padded)], [false, false], 'native: both addresses held')
        else assert.ok(!tryBind(padded) || !tryBind(exact), 'js: the address node:net bound is held')
      } finally {
        lock.release()
      }
      assert.equal([tryBind(exact), tryBind(padded)], [true, true], `${backend}: both free after release`)
    }
  })

  test('the addon takes the abstract socket exactly where node:net binds abstract names (the probe a writer without the addon runs), by Node version', () => {
    assert.is(nodeBindsAbstractNames(), canUseAbstractSockets(), `this Node (${process.version}): the version rule agrees with the probe`)
    // Measured on Linux builds of each version: EINVAL, every name one address, or it works.
    for (const [v, works] of [['18.18.0', false], ['18.20.8', false], ['20.0.0', false], ['20.7.0', false], ['20.8.0', true], ['20.20.2', true], ['21.0.0', true], ['22.12.0', true], ['24.1.0', true]] as const)
      assert.is(nodeBindsAbstractNames(v), works, v)
  })

  test('addon: where Unix sockets are refused (a sandbox), the lock falls back to LOCK as the claim, leaving no socket open', () => {
    const real = loadAddon().addon!
    for (const failOn of [1, 2]) {
      const dir = tmpDir(`lock-nounix-${failOn}`)
      fs.mkdirSync(dir, { recursive: true })
      let calls = 0
      const addon = {
        ...real,
        bindAbstract(address: Uint8Array): number {
          if (++calls === failOn) throw Object.assign(new Error('socket failed: Address family not supported by protocol'), { errno: -97, syscall: 'socket' })
          return real.bindAbstract(address)
        },
      }
      const before = fdCount()
      const lock = acquireLock(dir, { addon })
      assert.equal(parseInt(fs.readFileSync(join(dir, 'LOCK'), 'utf8')), process.pid, `failing call ${failOn}: LOCK names this process`)
      assert.throws(() => acquireLock(dir, { addon }), (err: WalError) => err.code === 'WAL_LOCKED')
      lock.release()
      assert.is(fdCount(), before, `failing call ${failOn}: no fd left open`)
    }
  })

  test('addon: close releases every fd and socket: reopen works, nothing leaks on success or refusal', async () => {
    const dir = tmpDir('lock-fds')
    const heldWith = tmpDir('lock-fds-a')
    const heldWithout = tmpDir('lock-fds-j')
    const [r1, r2] = await Promise.all([driver('A1').open(heldWith, 'f'), driver('N1').open(heldWithout, 'f')])
    assert.equal([r1.code, r2.code], ['OK', 'OK'])
    ;(await WriteAheadLog.open(dir, { ...SEG, backend: 'native' })).closeSync() // the directory exists
    const before = fdCount()
    for (let i = 0; i < 3; i++) {
      const a = await WriteAheadLog.open(dir, { ...SEG, backend: 'native' })
      await expectWalError(WriteAheadLog.open(dir, { ...SEG, backend: 'js' }), 'WAL_LOCKED', 'this process')
      await a.close()
      WriteAheadLog.openSync(dir, { ...SEG, backend: 'js' }).closeSync()
      for (const held of [heldWith, heldWithout]) {
        await expectWalError(WriteAheadLog.open(held, { ...SEG, backend: 'native' }), 'WAL_LOCKED', `held by another process (${held})`)
        await expectWalError(() => WriteAheadLog.openSync(held, { ...SEG, backend: 'js' }), 'WAL_LOCKED', `held by another process (${held})`)
      }
    }
    await new Promise((r) => setTimeout(r, 20))
    assert.is(fdCount(), before, 'as many open fds as before')
    await Promise.all([driver('A1').close('f'), driver('N1').close('f')])
  })

  test('no addon: close releases every fd and socket: reopen works, nothing leaks on success or refusal', async () => {
    const dir = tmpDir('lock-fds-js')
    const held = tmpDir('lock-fds-held')
    const holder = await WriteAheadLog.open(held, { ...SEG, backend: 'native' })
    const d = driver('N2')
    try {
      assert.is((await d.open(dir, 'a')).code, 'OK')
      await d.close('a')
      const before = (await d.cmd({ op: 'fds' })).fds
      for (let i = 0; i < 3; i++) {
        assert.is((await d.open(dir, 'a')).code, 'OK')
        assert.is((await d.open(dir, 'b', { sync: true })).code, 'WAL_LOCKED')
        await d.close('a')
        assert.is((await d.open(dir, 'a', { sync: true })).code, 'OK', 'reopen after close')
        await d.close('a')
        assert.is((await d.open(held, 'b')).code, 'WAL_LOCKED', 'held by another process')
      }
      assert.is((await d.cmd({ op: 'fds' })).fds, before, 'as many open fds as before')
    } finally {
      await holder.close()
    }
  })
}

// --- LOCK as the claim: the lock where no abstract socket is to be had ----------------------
//
// macOS, the BSDs and Windows (or a Node too old to bind abstract names) claim LOCK itself.
// lib/lock.ts's second argument makes it act so here: platform 'darwin' (with the addon: a
// flock on the directory as well), or 'win32' (with the addon: the OS lock on LOCK).

const NO_SOCKET = { op: 'lock', platform: 'darwin' }

test('LOCK as the claim, 20 rounds from a free, a missing and a stale LOCK: exactly one of two simultaneous claimants wins', async () => {
  const dir = tmpDir('lock-claim-race')
  fs.mkdirSync(dir)
  const lock = join(dir, 'LOCK')
  const dead = spawnSync(process.execPath, ['-e', '']).pid!
  let round = 0
  const prepare = () => {
    const state = round++ % 3
    if (state === 1) fs.rmSync(lock, { force: true })
    if (state === 2) fs.writeFileSync(lock, `${dead}\nfastwal start=1\n`)
  }
  for (const [x, y, addon] of [['N1', 'N2', [false, false]], ['A1', 'N1', [true, false]]] as const) {
    const a = driver(x)
    const b = driver(y)
    let i = 0
    await race(a, b, x === 'N1' ? 20 : 10, (at) => ({ ...NO_SOCKET, id: 'race', dir, at, addon: addon[i++ % 2] }), prepare)
  }
  const left = fs.readdirSync(dir).filter((n) => n !== 'LOCK')
  assert.equal(left, [], 'no guard or temporary file is left behind')
  assert.is(fs.readFileSync(lock, 'utf8'), '', 'an empty LOCK once released')
})

test('LOCK as the claim: a dead holder, or this pid left by an earlier process, is taken over; a live one is not', async () => {
  const dir = tmpDir('lock-claim')
  fs.mkdirSync(dir)
  const lock = join(dir, 'LOCK')
  const env = { platform: 'darwin' as const, addon: null }
  const dead = spawnSync(process.execPath, ['-e', '']).pid!
  const alive = driver('N1').proc.pid!
  const before = fdCount()
  const takeOver = (content: string, what: string) => {
    fs.writeFileSync(lock, content)
    const l = acquireLock(dir, env)
    assert.ok(fs.readFileSync(lock, 'utf8').startsWith(`${process.pid}\nfastwal start=`), `${what}: LOCK names this process now`)
    l.release()
    assert.is(fs.readFileSync(lock, 'utf8'), '', 'released: LOCK is empty')
  }
  const refused = (content: string, holder: string, what: string) => {
    fs.writeFileSync(lock, content)
    try {
      acquireLock(dir, env).release()
      assert.unreachable(`${what}: expected WAL_LOCKED`)
    } catch (e) {
      assert.is((e as WalError).code, 'WAL_LOCKED', `${what}: ${e}`)
      assert.ok((e as WalError).message.includes(holder), `${what}: names the holder: ${(e as WalError).message}`)
    }
    assert.is(fs.readFileSync(lock, 'utf8'), content, `${what}: LOCK untouched`)
  }
  takeOver('', 'an empty LOCK (released)')
  takeOver('garbage', 'an unreadable LOCK')
  takeOver(`${dead}\nfastwal start=1\n`, 'a dead holder')
  takeOver(`${dead}\n`, 'a dead holder (0.1.0 format)')
  takeOver(`${process.pid}\nfastwal start=${PROCESS_START - 3600_000}\n`, 'this pid, left by an earlier process')
  takeOver(`${process.pid}\n`, 'this pid, left by 0.1.0')
  refused(`${alive}\nfastwal start=1\n`, `process ${alive}`, 'a live holder')
  refused(`${process.pid}\nfastwal start=${PROCESS_START}\n`, 'in this process', 'another thread of this process')

  // A guard left by a process that died while taking over a stale LOCK does not block.
  fs.writeFileSync(lock, `${dead}\n`)
  const ino = fs.statSync(lock, { bigint: true }).ino
  fs.writeFileSync(`${lock}.break-${ino}`, `${dead}\n`)
  takeOver(`${dead}\n`, 'a stale LOCK behind a stale guard')
  // A live guard: someone is taking it over right now, and will hold it.
  fs.writeFileSync(`${lock}.break-${fs.statSync(lock, { bigint: true }).ino}`, `${alive}\n`)
  refused('', `process ${alive}`, 'a free LOCK being taken over by a live process')
  fs.rmSync(`${lock}.break-${fs.statSync(lock, { bigint: true }).ino}`)

  assert.equal(fs.readdirSync(dir), ['LOCK'], 'no guard or temporary file is left behind')
  assert.is(fdCount(), before, 'no fd left open')
})

test('LOCK as the claim: with the addon, deleting LOCK while held lets no second writer in (the directory flock); the win32 path works', async () => {
  const dir = tmpDir('lock-claim-rm')
  fs.mkdirSync(dir)
  const a = driver('A1')
  const b = driver('A2')
  for (const platform of ['darwin', 'win32']) {
    assert.is((await a.cmd({ op: 'lock', id: 'l', dir, platform, addon: true })).code, 'OK', platform)
    assert.is((await b.cmd({ op: 'lock', id: 'l', dir, platform, addon: true })).code, 'WAL_LOCKED', `${platform}: held`)
    assert.is((await b.cmd({ op: 'lock', id: 'l', dir, platform, addon: false })).code, 'WAL_LOCKED', `${platform}: held, for a process without the addon`)
    if (platform === 'darwin') {
      fs.rmSync(join(dir, 'LOCK'))
      assert.is((await b.cmd({ op: 'lock', id: 'l', dir, platform, addon: true })).code, 'WAL_LOCKED', `${platform}: LOCK deleted, still held`)
    }
    await a.cmd({ op: 'close', id: 'l' })
    assert.is((await b.cmd({ op: 'lock', id: 'l', dir, platform, addon: true })).code, 'OK', `${platform}: free after release`)
    await b.cmd({ op: 'close', id: 'l' })
  }
})

test.run()
