// Backend selection when the native addon cannot load: 'auto' (or no choice) falls back to
// the pure-TS backend with one warning saying why and how to fix it, 'native' throws
// WAL_INVALID naming the fix, 'js' never warns.
//
// Each case runs a child node with FASTWAL_NATIVE_DIR pointing the loader somewhere else:
// an empty directory (no build, no prebuild) or one holding a broken prebuild. Warnings are
// process-wide and emitted once, so a fresh process per case is the only honest test.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import { join, resolve } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { loadAddon } from '../../lib/native-addon.js'

const repo = resolve(__dirname, '..', '..')
const lib = join(repo, 'lib', 'index.ts')
const tsx = require.resolve('tsx/cjs')
const scratch = fs.mkdtempSync(join(os.tmpdir(), 'fastwal-fallback-'))
process.on('exit', () => fs.rmSync(scratch, { recursive: true, force: true }))

let n = 0
function emptyDir(): string {
  const d = join(scratch, `native-${++n}`)
  fs.mkdirSync(d)
  return d
}

interface Thrown {
  isWalError: boolean
  name: string
  code: string
  message: string
}
interface Report {
  backends: string[]
  replayed: string[]
  thrown: Thrown[]
  created: boolean
  warnings: { code?: string; name: string; message: string }[]
}

// The child: opens WALs with the requested backend and reports what happened as JSON.
const CHILD = `
const fs = require('node:fs')
const { WriteAheadLog, WalError } = require(process.env.T_LIB)
const warnings = []
process.on('warning', (w) => warnings.push({ code: w.code, name: w.name, message: w.message }))
const backend = process.env.T_BACKEND
const base = process.env.T_DIR
const out = { backends: [], replayed: [], thrown: [], created: false, warnings }
const caught = (e) => out.thrown.push({ isWalError: e instanceof WalError, name: e.name, code: e.code, message: e.message })
;(async () => {
  const opts = backend === 'default' ? undefined : { backend }
  try {
    const a = await WriteAheadLog.open(base + '/a', opts)
    out.backends.push(a.backend)
    await a.append({ type: 'put', key: 'k1', value: 'v1' })
    await a.appendBatch([{ type: 'put', key: 'k2', value: 'v2' }, { type: 'del', key: 'k1' }])
    await a.close()
    const b = WriteAheadLog.openSync(base + '/a', opts)
    out.backends.push(b.backend)
    for (const e of b.replaySync({ from: 0 })) out.replayed.push(e.lsn + ':' + e.type + ':' + e.key.toString())
    b.closeSync()
  } catch (e) { caught(e) }
  try { WriteAheadLog.openSync(base + '/c', opts).closeSync() } catch (e) { caught(e) }
  out.created = fs.existsSync(base + '/a') || fs.existsSync(base + '/c')
  await new Promise((r) => setTimeout(r, 10))
  process.stdout.write(JSON.stringify(out))
})()
`

function run(nativeDir: string, backend: 'default' | 'auto' | 'native' | 'js'): { report: Report; stderr: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, FASTWAL_NATIVE_DIR: nativeDir, T_LIB: lib, T_BACKEND: backend, T_DIR: join(scratch, `wal-${++n}`) }
  delete env.NODE_NO_WARNINGS
  delete env.NODE_OPTIONS
  const r = spawnSync(process.execPath, ['-r', tsx, '-e', CHILD], { env, encoding: 'utf8', timeout: 60_000 })
  assert.is(r.status, 0, `child failed (status ${r.status}): ${r.stderr}`)
  const report = JSON.parse(r.stdout) as Report
  // Only fastwal's own warnings: the environment can add node's (e.g. FORCE_COLOR together
  // with NODE_DISABLE_COLORS, as .ci/run sets them, makes node warn).
  report.warnings = report.warnings.filter((w) => w.code?.startsWith('FASTWAL') || /fastwal/i.test(w.message))
  return { report, stderr: r.stderr }
}

const count = (s: string, sub: string) => s.split(sub).length - 1
const NOT_FOUND = 'No native build was found'

for (const backend of ['default', 'auto'] as const) {
  test(`backend ${backend === 'default' ? 'unset' : "'auto'"}, empty FASTWAL_NATIVE_DIR: pure-TS backend and one warning saying why and how to fix`, () => {
    const { report, stderr } = run(emptyDir(), backend)
    assert.equal(report.thrown, [])
    assert.equal(report.backends, ['js', 'js'])
    assert.equal(report.replayed, ['1:put:k1', '2:put:k2', '3:del:k1'])
    // Three opens in the process, one warning.
    assert.is(report.warnings.length, 1, JSON.stringify(report.warnings))
    const [w] = report.warnings
    assert.is(w.code, 'FASTWAL_NATIVE_UNAVAILABLE')
    assert.ok(w.message.includes('native addon unavailable'), w.message)
    assert.ok(w.message.includes(NOT_FOUND), `says why: ${w.message}`)
    assert.ok(w.message.includes('npm rebuild fastwal'), `says how to fix: ${w.message}`)
    assert.ok(w.message.includes("backend: 'js'"), `says how to silence: ${w.message}`)
    // And node prints it once on stderr, with its code.
    assert.is(count(stderr, '[FASTWAL_NATIVE_UNAVAILABLE] Warning: fastwal: native addon unavailable'), 1, stderr)
  })
}

test("backend 'native', empty FASTWAL_NATIVE_DIR: WalError WAL_INVALID naming the fix, nothing created, no warning", () => {
  const { report, stderr } = run(emptyDir(), 'native')
  assert.is(report.thrown.length, 2, 'open and openSync both throw')
  for (const e of report.thrown) {
    assert.ok(e.isWalError, `a WalError, not ${e.name}`)
    assert.is(e.code, 'WAL_INVALID')
    assert.ok(e.message.includes("backend: 'native'"), e.message)
    assert.ok(e.message.includes(NOT_FOUND), `says why: ${e.message}`)
    assert.ok(e.message.includes('npm rebuild fastwal'), `says how to fix: ${e.message}`)
    assert.ok(e.message.includes("backend: 'auto'"), `names the alternative: ${e.message}`)
  }
  assert.is(report.created, false, 'no directory created')
  assert.equal(report.warnings, [])
  assert.not.ok(stderr.includes('FASTWAL_NATIVE_UNAVAILABLE'), stderr)
})

test("backend 'js', empty FASTWAL_NATIVE_DIR: no warning at all", () => {
  const { report, stderr } = run(emptyDir(), 'js')
  assert.equal(report.thrown, [])
  assert.equal(report.backends, ['js', 'js'])
  assert.equal(report.warnings, [])
  assert.not.ok(stderr.includes('FASTWAL_NATIVE_UNAVAILABLE'), stderr)
})

test("a prebuild that exists but cannot load: 'auto' falls back with the load error, 'native' throws it", () => {
  const dir = emptyDir()
  const tuple = join(dir, 'prebuilds', `${process.platform}-${process.arch}`)
  fs.mkdirSync(tuple, { recursive: true })
  fs.writeFileSync(join(tuple, 'fastwal.node'), 'not a shared object')
  const auto = run(dir, 'auto')
  assert.equal(auto.report.backends, ['js', 'js'])
  assert.is(auto.report.warnings.length, 1)
  assert.is(auto.report.warnings[0].code, 'FASTWAL_NATIVE_UNAVAILABLE')
  assert.not.ok(auto.report.warnings[0].message.includes(NOT_FOUND), 'reports the load failure, not a missing build')
  const native = run(dir, 'native')
  assert.is(native.report.thrown.length, 2)
  assert.ok(native.report.thrown.every((e) => e.isWalError && e.code === 'WAL_INVALID'))
})

test('FASTWAL_NATIVE_DIR at the package root loads the addon: native backend, no warning', () => {
  assert.ok(loadAddon().addon, `this test needs the addon built (npm run prebuild or npm run build:native): ${loadAddon().error?.message}`)
  const { report, stderr } = run(repo, 'auto')
  assert.equal(report.thrown, [])
  assert.equal(report.backends, ['native', 'native'])
  assert.equal(report.warnings, [])
  assert.not.ok(stderr.includes('FASTWAL_NATIVE_UNAVAILABLE'), stderr)
})

test.run()
