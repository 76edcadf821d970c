// The `fastwal` command (bin/fastwal.js over lib/cli.ts, the built dist/): stat, verify,
// dump and tail on clean, damaged and live logs; exit codes; nothing is ever modified.
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../lib/index.js'
import { segmentFiles, tmpDir } from './helpers/util.js'
import { collect } from './helpers/wal.js'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { DAMAGE, segments } = require('./helpers/damage.cjs') as {
  DAMAGE: { name: string; kind: string; at?(segs: string[]): string; apply(dir: string): void }[]
  segments(dir: string): string[]
}

const ROOT = join(__dirname, '..')
const BIN = join(ROOT, 'bin', 'fastwal.js')
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8' })

function snapshot(dir: string): Map<string, string> {
  return new Map(fs.readdirSync(dir).map((n) => [n, fs.readFileSync(join(dir, n)).toString('hex')]))
}

async function makeLog(): Promise<string> {
  const dir = tmpDir('cli')
  const wal = await WriteAheadLog.open(dir, { segmentSize: 4096, preallocate: false })
  for (let i = 0; i < 120; i++) await wal.append({ type: 'put', key: `k${i}`, value: i % 10 === 0 ? Buffer.from([0, 255, i]) : `value ${i}` })
  await wal.appendBatch([
    { type: 'put', key: 'x', value: 'y' },
    { type: 'del', key: 'k1' },
  ])
  await (await wal.cursor('proj')).confirm(50)
  await wal.close()
  return dir
}

test('--help and bad usage: exit 0 and 2 for every command', () => {
  for (const cmd of ['stat', 'verify', 'dump', 'tail', 'ship']) {
    const h = run(cmd, '--help')
    assert.is(h.status, 0, cmd)
    assert.match(h.stdout, new RegExp(`Usage: fastwal ${cmd}`))
    assert.is(run(cmd, '--no-such-option', 'x').status, 2, `${cmd} with an unknown option`)
    assert.is(run(cmd).status, 2, `${cmd} without a directory`)
  }
  assert.is(run().status, 2)
  assert.is(run('frobnicate').status, 2)
  assert.is(run('dump', '/nonexistent', '--from', '-3').status, 2)
})

test('stat, verify and dump on a clean log; nothing is modified', async () => {
  const dir = await makeLog()
  const before = snapshot(dir)
  const s = run('stat', dir, '--json')
  assert.is(s.status, 0, s.stderr)
  const info = JSON.parse(s.stdout)
  assert.is(info.lastLsn, 122)
  assert.is(info.segments.length, segmentFiles(dir).length)
  assert.equal(info.cursors.map((c: { name: string; lsn: number; lagEntries: number }) => [c.name, c.lsn, c.lagEntries]), [['proj', 50, 72]])
  assert.match(run('stat', dir).stdout, /LSNs\s+first 1, last 122/)
  const v = run('verify', dir, '--json')
  assert.is(v.status, 0, v.stdout)
  const r = JSON.parse(v.stdout)
  assert.equal([r.entries, r.batches, r.findings.length], [122, 121, 0])
  const d = run('dump', dir, '--from', '10', '--to', '12').stdout.trim().split('\n')
  assert.equal(d, ['10 put "k9" "value 9"', '11 put "k10" 0x00ff0a', '12 put "k11" "value 11"'])
  const j = run('dump', dir, '--from', '121', '--json').stdout.trim().split('\n').map((l) => JSON.parse(l))
  assert.equal(j, [
    { lsn: 121, type: 'put', key: Buffer.from('x').toString('base64'), value: Buffer.from('y').toString('base64') },
    { lsn: 122, type: 'del', key: Buffer.from('k1').toString('base64') },
  ])
  assert.equal(snapshot(dir), before, 'a command modified the log')
})

test('verify reports every damaged place, where, and what open would do; exit 1; nothing modified', async () => {
  const dir = await makeLog()
  const segs = segmentFiles(dir)
  // A flipped byte in an older segment, and a torn tail in the last one.
  const older = join(dir, segs[0])
  const b = fs.readFileSync(older)
  b[100] ^= 0x40
  fs.writeFileSync(older, b)
  const last = join(dir, segs[segs.length - 1])
  fs.truncateSync(last, fs.statSync(last).size - 5)
  const before = snapshot(dir)
  const v = run('verify', dir, '--json')
  assert.is(v.status, 1)
  const r = JSON.parse(v.stdout)
  const places = r.findings.map((f: { segment: string; offset: number; open: string }) => [f.segment, f.open])
  assert.ok(places.some((p: string[]) => p[0] === segs[0] && p[1].startsWith('replay stops')), JSON.stringify(r.findings))
  assert.ok(places.some((p: string[]) => p[0] === segs[segs.length - 1] && p[1].startsWith('cuts it')), JSON.stringify(r.findings))
  assert.ok(r.findings.every((f: { offset: number }) => Number.isInteger(f.offset) && f.offset >= 0))
  assert.match(run('verify', dir).stdout, new RegExp(segs[0]))
  assert.equal(snapshot(dir), before, 'verify modified the log')
})

test('verify on every kind of damage the corruption suites make: exit code, the segment, and a judgement that the default open bears out; nothing modified', async () => {
  const base = tmpDir('cli-base')
  const w = await WriteAheadLog.open(base, { segmentSize: 4096, preallocate: false })
  for (let i = 0; i < 200; i++) {
    if (i % 7 === 3) await w.appendBatch([{ type: 'put', key: `b${i}`, value: 'x'.repeat(i % 40) }, { type: 'del', key: `k${i - 1}` }])
    else await w.append({ type: 'put', key: `k${i}`, value: `value ${i} `.repeat(3) })
  }
  await w.close()
  const baseSegs = segments(base)
  assert.ok(baseSegs.length >= 4)
  for (const d of DAMAGE) {
    const dir = tmpDir('cli-damage')
    fs.cpSync(base, dir, { recursive: true })
    d.apply(dir)
    const before = snapshot(dir)
    const v = run('verify', dir, '--json')
    assert.equal(snapshot(dir), before, `${d.name}: verify modified the log`)
    const report = JSON.parse(v.stdout) as { findings: { segment: string; offset: number; what: string; open: string }[] }
    if (d.kind === 'clean') {
      assert.is(v.status, 0, `${d.name}: ${v.stdout}`)
      assert.equal(report.findings, [], d.name)
      const strict = await WriteAheadLog.open(dir, { recovery: 'strict' }) // clean means even strict accepts it
      await strict.close()
      continue
    }
    assert.is(v.status, 1, `${d.name}: exit 1`)
    const where = d.at!(baseSegs)
    assert.ok(report.findings.length > 0, d.name)
    for (const f of report.findings) assert.is(f.open, d.kind, `${d.name}: ${JSON.stringify(f)}`)
    assert.ok(report.findings.some((f) => f.segment === where), `${d.name}: names ${where}: ${JSON.stringify(report.findings)}`)
    assert.match(run('verify', dir).stdout, new RegExp(where), `${d.name}: the human report names the segment`)

    // What the default open does matches the judgement.
    if (d.kind === 'refuses (WAL_CORRUPT)') {
      const err = await WriteAheadLog.open(dir).then(() => undefined, (e) => e)
      assert.is(err?.code, 'WAL_CORRUPT', `${d.name}: open refuses`)
    } else {
      const wal = await WriteAheadLog.open(dir)
      const err = await collect(wal.replay({ from: 0 })).then(() => undefined, (e) => e)
      await wal.close()
      if (d.kind === 'cuts it (torn tail)') {
        assert.is(err, undefined, `${d.name}: replay after the repair`)
        assert.is(run('verify', dir).status, 0, `${d.name}: clean once open cut the tail`)
      } else assert.is(err?.code, 'WAL_CORRUPT', `${d.name}: replay stops there`)
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('verify on a live log (a writer appending) is clean; tail follows it', async () => {
  const dir = tmpDir('cli-live')
  const wal = await WriteAheadLog.open(dir, { segmentSize: 4096 })
  for (let i = 0; i < 20; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v' })
  const tail = spawn(process.execPath, [BIN, 'tail', dir, '--from', '1'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  tail.stdout.on('data', (d: Buffer) => (out += d.toString()))
  let writing = true
  const writer = (async () => {
    for (let i = 20; writing; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'v'.repeat(i % 50) })
  })()
  await new Promise((r) => setTimeout(r, 300))
  const v = run('verify', dir, '--json')
  writing = false
  await writer
  assert.is(v.status, 0, v.stdout)
  assert.ok(JSON.parse(v.stdout).live)
  const lines = () => out.trim().split('\n').filter(Boolean)
  for (let k = 0; k < 100 && lines().length < wal.lastLsn; k++) await new Promise((r) => setTimeout(r, 20))
  tail.kill('SIGINT')
  const code = await new Promise((r) => tail.on('exit', r))
  assert.is(code, 0)
  assert.equal(lines().map((l) => Number(l.split(' ')[0])), Array.from({ length: wal.lastLsn }, (_, i) => i + 1))
  await wal.close()
})

test.run()
