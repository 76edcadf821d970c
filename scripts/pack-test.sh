#!/usr/bin/env bash
# Packaging proof: what `npm publish` would ship installs and works on a machine
# with no compiler.
#
#   1. Makes sure prebuilds/<platform>-<arch>/ holds a prebuild of the current native/ sources
#      (runs `npm run prebuild`, i.e. prebuildify, only when it is missing or older than
#      native/ or binding.gyp; PACK_TEST_PREBUILD=1 forces it, PACK_TEST_PREBUILD=0 never runs
#      it: the release workflow uses that to test the prebuilds it collected).
#   2. `npm pack`s the package and checks the file list: compiled JS (ESM + CJS), .d.ts,
#      the prebuild, native sources + binding.gyp + the install script; nothing else.
#   3. Creates an empty project in a temp dir and `npm install`s the tarball with a PATH that
#      holds node and npm but no cc, g++, make or python3 (dependencies come from the registry).
#   4. In that project: require('fastwal') and import('fastwal') both work, a WAL opens,
#      appends, replays, and wal.backend === 'native' without a fallback warning.
#   5. Type-checks consumer files (.mts, .cts, and a node10-resolution .ts, plus
#      test/types/encodings.consumer.ts both ways) against the shipped types with tsc --strict --noEmit.
#   6. The install script: a forced source build without a compiler says so and fails; with
#      the prebuild removed it says it builds from source, fails softly, and backend 'auto'
#      falls back to 'js' with the FASTWAL_NATIVE_UNAVAILABLE warning.
#   7. Where the machine has a toolchain: a forced source build from the tarball's native/
#      sources and binding.gyp works (the fallback compiles from what ships).
#
# Prints one line per check and ends with "pack-test: N passed, N failed" (.ci/run adds these
# to its totals). Exit status 0 only if every check passed. Linux/macOS (bash).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export FORCE_COLOR=0 NODE_DISABLE_COLORS=1 npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
unset FASTWAL_NATIVE_DIR FASTWAL_BUILD_FROM_SOURCE FASTWAL_PREBUILD npm_config_build_from_source NODE_OPTIONS

work=$(mktemp -d "${TMPDIR:-/tmp}/fastwal-pack.XXXXXX")
if [ -z "${PACK_TEST_KEEP:-}" ]; then trap 'rm -rf "$work"' EXIT; else echo "pack-test: keeping $work"; fi

passed=0
failed=0
started=$(node -p 'Date.now()')
at() { node -p "((Date.now() - $started) / 1000).toFixed(1).padStart(5) + 's'"; }
ok() { passed=$((passed + 1)); echo "ok   $(at) $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $(at) $1"; if [ -n "${2:-}" ] && [ -f "$2" ]; then sed 's/^/       | /' "$2" | tail -n 40; fi; }
finish() { echo "pack-test: ${passed} passed, ${failed} failed"; [ "$failed" -eq 0 ]; exit $?; }
now() { node -p 'Date.now()'; }

tuple=$(node -p 'process.platform + "-" + process.arch')

# ---- 1. prebuild ---------------------------------------------------------------------------
newest_prebuild=$(ls -t prebuilds/"$tuple"/*.node 2>/dev/null | head -n 1)
stale=""
if [ -z "$newest_prebuild" ]; then
  stale="no prebuild in prebuilds/$tuple/"
elif [ -n "$(find native binding.gyp -newer "$newest_prebuild" -type f 2>/dev/null | head -n 1)" ]; then
  stale="prebuild older than native/ or binding.gyp"
fi
if [ "${PACK_TEST_PREBUILD:-}" = "0" ]; then
  if [ -z "$newest_prebuild" ]; then
    bad "PACK_TEST_PREBUILD=0 and no prebuild in prebuilds/$tuple/"
    finish
  fi
  ok "prebuild present: $newest_prebuild (used as it is, PACK_TEST_PREBUILD=0)"
elif [ "${PACK_TEST_PREBUILD:-}" = "1" ] || [ -n "$stale" ]; then
  if npm run prebuild >"$work/prebuild.log" 2>&1 && ls prebuilds/"$tuple"/*.node >/dev/null 2>&1; then
    ok "prebuild present: npm run prebuild (${stale:-forced}) wrote $(ls prebuilds/"$tuple"/*.node | tr '\n' ' ')"
  else
    bad "npm run prebuild (prebuildify)" "$work/prebuild.log"
    finish
  fi
else
  ok "prebuild present: $newest_prebuild (newer than native/ and binding.gyp, not rebuilt)"
fi

# ---- 2. npm pack and the file list ---------------------------------------------------------
# `npm pack` runs `prepare` (build:ts), so dist/ is rebuilt from lib/ first.
if npm pack --json --pack-destination "$work" >"$work/pack.json" 2>"$work/pack.log"; then
  tarball="$work/$(node -p "require(process.argv[1])[0].filename" "$work/pack.json")"
  ok "npm pack -> $(basename "$tarball")"
else
  bad "npm pack" "$work/pack.log"
  finish
fi

if node - "$work/pack.json" "$tuple" >"$work/files.log" 2>&1 <<'EOF'
const [file, tuple] = process.argv.slice(2)
const pack = require(file)[0]
const paths = pack.files.map((f) => f.path).sort()
const allowed = [
  /^package\.json$/, /^README(\.md)?$/i, /^LICEN[CS]E(\.md|\.txt)?$/i,
  /^dist\/cjs\/[\w.-]+\.(js|d\.ts)$/, /^dist\/cjs\/package\.json$/,
  /^dist\/esm\/(index|jetstream)\.(mjs|d\.mts)$/, /^dist\/esm\/package\.json$/, /^bin\/fastwal\.js$/, /^docs\/[\w-]+\.md$/,
  /^prebuilds\/[a-z0-9]+-[a-z0-9]+\/[\w.+-]+\.node$/,
  /^native\/[\w-]+\.(cc|h)$/, /^binding\.gyp$/, /^scripts\/install\.js$/,
]
const required = [
  'package.json', 'binding.gyp', 'scripts/install.js',
  'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/cjs/package.json',
  'dist/esm/index.mjs', 'dist/esm/index.d.mts', 'dist/esm/package.json',
  'dist/cjs/jetstream.js', 'dist/esm/jetstream.mjs', 'bin/fastwal.js',
  'docs/FORMAT.md', 'docs/ARCHITECTURE.md', 'docs/INSTALL.md',
  'native/binding.cc', 'native/codec.cc', 'native/crc32c.cc', 'native/file_io.cc',
]
const problems = []
for (const p of paths) if (!allowed.some((re) => re.test(p))) problems.push('unexpected file in tarball: ' + p)
for (const p of required) if (!paths.includes(p)) problems.push('missing from tarball: ' + p)
if (!paths.some((p) => p.startsWith(`prebuilds/${tuple}/`) && p.endsWith('.node'))) problems.push(`no prebuilds/${tuple}/*.node in tarball`)
// Every source file binding.gyp compiles must ship, or the from-source fallback cannot work.
const gyp = require('fs').readFileSync('binding.gyp', 'utf8')
for (const m of gyp.matchAll(/"(native\/[^"]+)"/g)) if (!paths.includes(m[1])) problems.push('binding.gyp source not shipped: ' + m[1])
console.log(`tarball ${pack.filename}: ${pack.size} bytes packed, ${pack.unpackedSize} bytes unpacked, ${paths.length} files`)
for (const f of pack.files.slice().sort((a, b) => a.path.localeCompare(b.path))) console.log(`  ${String(f.size).padStart(8)}  ${f.path}`)
for (const p of problems) console.log('PROBLEM: ' + p)
process.exit(problems.length ? 1 : 0)
EOF
then
  ok "tarball file list: $(head -n 1 "$work/files.log")"
else
  bad "tarball file list" "$work/files.log"
fi
sed -n '2,$p' "$work/files.log" | grep -v '^PROBLEM' || true

# ---- 3. install into an empty project without a toolchain ----------------------------------
bin="$work/bin"
mkdir -p "$bin"
# node, npm and npx, plus the sh that npm runs scripts with; nothing else.
for tool in node npm npx sh; do ln -s "$(command -v "$tool")" "$bin/$tool"; done
nocc_path="$bin"
project="$work/consumer"
mkdir -p "$project"
cat >"$project/package.json" <<'EOF'
{
  "name": "fastwal-consumer",
  "version": "1.0.0",
  "private": true,
  "scripts": { "probe": "echo probe-ran; for t in cc gcc c++ g++ clang make python3 python; do command -v $t; done; true" }
}
EOF
# in_project [VAR=value ...] command ...: run in the consumer with the toolchain-free PATH.
in_project() { (cd "$project" && env PATH="$nocc_path" "$@"); }

# The toolchain must be invisible both to us and inside npm's script environment.
in_project npm run --silent probe >"$work/probe.log" 2>&1
if [ "$(cat "$work/probe.log")" = "probe-ran" ]; then
  ok "no cc, g++, make or python3 on the install PATH (also inside npm scripts)"
else
  bad "toolchain still visible on the restricted PATH" "$work/probe.log"
fi

t0=$(now)
if in_project npm install --foreground-scripts --no-audit --no-fund "$tarball" >"$work/install.log" 2>&1; then
  t1=$(now)
  install_ms=$((t1 - t0))
  ok "npm install of the tarball without a toolchain ($(awk "BEGIN{printf \"%.1f\", $install_ms/1000}") s)"
else
  bad "npm install of the tarball without a toolchain" "$work/install.log"
  finish
fi
if grep -q 'building the native addon\|gyp ' "$work/install.log" || [ -e "$project/node_modules/fastwal/build" ]; then
  bad "install compiled from source although a prebuild matches" "$work/install.log"
else
  ok "install used the prebuild (no compile, no build/ directory)"
fi

# The prebuild does not depend on the install script: npm may skip it (--ignore-scripts, or
# install scripts not approved in allowScripts) and the addon still loads at run time.
project2="$work/consumer-ignore-scripts"
mkdir -p "$project2"
echo '{ "name": "fastwal-consumer-2", "version": "1.0.0", "private": true }' >"$project2/package.json"
if (cd "$project2" && env PATH="$nocc_path" npm install --ignore-scripts --no-audit --no-fund "$tarball" >"$work/install2.log" 2>&1 \
  && env PATH="$nocc_path" node -e "
    const { WriteAheadLog } = require('fastwal')
    const dir = require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'fastwal-is-'))
    const wal = WriteAheadLog.openSync(dir + '/wal')
    if (wal.backend !== 'native') throw new Error('backend ' + wal.backend)
    wal.appendSync({ type: 'put', key: 'k', value: 'v' })
    wal.closeSync()
    require('fs').rmSync(dir, { recursive: true })
  " >>"$work/install2.log" 2>&1); then
  ok "npm install --ignore-scripts: the prebuild still loads (backend native)"
else
  bad "npm install --ignore-scripts" "$work/install2.log"
fi

# ---- 4. require() and import() in the consumer ---------------------------------------------
cat >"$project/smoke.cjs" <<'EOF'
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const warnings = []
process.on('warning', (w) => warnings.push(w.code || w.name))
const { WriteAheadLog, WalError, crc32c } = require('fastwal')
assert.equal(require.resolve('fastwal'), path.join(__dirname, 'node_modules/fastwal/dist/cjs/index.js'))
async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fastwal-cjs-'))
  try {
    const wal = await WriteAheadLog.open(path.join(dir, 'wal'))
    assert.equal(wal.backend, 'native')
    assert.equal(await wal.append({ type: 'put', key: 'a', value: 'one' }), 1)
    assert.deepEqual(await wal.appendBatch([{ type: 'put', key: 'b', value: 'two' }, { type: 'del', key: 'a' }]), { first: 2, last: 3 })
    assert.equal(wal.appendSync({ type: 'put', key: 'c', value: Buffer.from([0, 255]) }), 4)
    await wal.close()
    const again = WriteAheadLog.openSync(path.join(dir, 'wal'))
    assert.equal(again.backend, 'native')
    const got = [...again.replaySync({ from: 0 })].map((e) => [e.lsn, e.type, e.key.toString(), e.value?.toString('hex')])
    assert.deepEqual(got, [[1, 'put', 'a', '6f6e65'], [2, 'put', 'b', '74776f'], [3, 'del', 'a', undefined], [4, 'put', 'c', '00ff']])
    await assert.rejects(WriteAheadLog.open(path.join(dir, 'wal')), (e) => e instanceof WalError && e.code === 'WAL_LOCKED')
    again.closeSync()
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283)
    assert.deepEqual(warnings.filter((c) => c === 'FASTWAL_NATIVE_UNAVAILABLE'), [])
    // The NATS clients are optional peers, not installed here: fastwal never loads them,
    // and fastwal/jetstream says what to install.
    assert.ok(!Object.keys(require.cache).some((k) => k.includes('@nats-io')))
    assert.throws(() => require('fastwal/jetstream'), (e) => e instanceof WalError && /npm install @nats-io\/transport-node @nats-io\/jetstream/.test(e.message))
    console.log('require ok: backend', wal.backend)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
main().catch((e) => { console.error(e); process.exit(1) })
EOF
cat >"$project/smoke.mjs" <<'EOF'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import fastwal, { WriteAheadLog, WalError, crc32c } from 'fastwal'
const warnings = []
process.on('warning', (w) => warnings.push(w.code || w.name))
const dynamic = await import('fastwal')
assert.equal(dynamic.WriteAheadLog, WriteAheadLog)
assert.equal(fastwal.WriteAheadLog, WriteAheadLog)
// One instance of every class whichever way fastwal is loaded.
assert.equal(createRequire(import.meta.url)('fastwal').WalError, WalError)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fastwal-esm-'))
try {
  {
    const wal = await WriteAheadLog.open(path.join(dir, 'wal'), { segmentSize: 4096, preallocate: false })
    assert.equal(wal.backend, 'native')
    for (let i = 0; i < 50; i++) await wal.append({ type: 'put', key: `k${i}`, value: 'x'.repeat(100) })
    await wal.appendBatch([{ type: 'put', key: 'last', value: 'v' }, { type: 'del', key: 'k0' }])
    assert.equal(wal.lastLsn, 52)
    assert.equal(wal.durableLsn, 52)
    await wal[Symbol.asyncDispose]() // what `await using` calls (the syntax needs Node 24)
  }
  const wal = await WriteAheadLog.open(path.join(dir, 'wal'), { backend: 'native' })
  let n = 0
  for await (const e of wal.replay({ from: 0 })) assert.equal(e.lsn, ++n)
  assert.equal(n, 52)
  const batches = []
  for await (const b of wal.replayBatches({ from: 51 })) batches.push([b.first, b.last, b.entries.length])
  assert.deepEqual(batches, [[51, 52, 2]])
  await wal.close()
  await assert.rejects(wal.append({ type: 'put', key: 'k', value: 'v' }), (e) => e instanceof WalError && e.code === 'WAL_CLOSED')
  assert.equal(crc32c(Buffer.from('456789'), crc32c(Buffer.from('123'))), 0xe3069283)
  assert.deepEqual(warnings.filter((c) => c === 'FASTWAL_NATIVE_UNAVAILABLE'), [])
  console.log('import ok: backend', wal.backend)
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
EOF
if in_project node smoke.cjs >"$work/cjs.log" 2>&1; then ok "require('fastwal'): $(tail -n 1 "$work/cjs.log")"; else bad "require('fastwal') smoke test" "$work/cjs.log"; fi
if in_project node smoke.mjs >"$work/esm.log" 2>&1; then ok "import('fastwal'): $(tail -n 1 "$work/esm.log")"; else bad "import('fastwal') smoke test" "$work/esm.log"; fi

# The fastwal command from the installed tarball (npx): stat, verify, dump, tail on a log the
# consumer writes; verify on every kind of damage of the corruption suites
# (test/helpers/damage.cjs: exit 0 or 1, the judgement borne out by a default open) and on a
# live log; bad usage (exit 2); nothing is modified by any of them.
cp "$root/test/helpers/damage.cjs" "$project/damage.cjs"
cat >"$project/cli.cjs" <<'EOF'
const { spawn, spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const { WriteAheadLog } = require('fastwal')
const { DAMAGE, segments } = require('./damage.cjs')
const cli = (...args) => spawnSync('npx', ['--no-install', 'fastwal', ...args], { encoding: 'utf8' })
const cliAsync = (args, until) => new Promise((res) => {
  // Its own process group: npx does not pass SIGINT on to the command it runs.
  const p = spawn('npx', ['--no-install', 'fastwal', ...args], { detached: true })
  let out = ''
  p.stdout.on('data', (b) => { out += b; if (until && until(out)) process.kill(-p.pid, 'SIGINT') })
  p.on('close', (status) => res({ status, stdout: out }))
})
const hash = (d) => crypto.createHash('sha1').update(fs.readdirSync(d).sort().map((n) => n + fs.readFileSync(d + '/' + n).toString('hex')).join()).digest('hex')
const fail = (what, r) => { console.error(what, r && (r.status + ' ' + r.stdout + r.stderr)); process.exit(1) }
;(async () => {
  const w = await WriteAheadLog.open('clilog', { segmentSize: 4096, preallocate: false })
  for (let i = 0; i < 200; i++) {
    if (i % 7 === 3) await w.appendBatch([{ type: 'put', key: 'b' + i, value: 'x'.repeat(i % 40) }, { type: 'del', key: 'k' + (i - 1) }])
    else await w.append({ type: 'put', key: 'k' + i, value: 'v' + i })
  }
  await w.append({ type: 'put', key: 'last', value: 'end' }) // LSN 230 (29 batches of two)
  await w.close()
  const before = hash('clilog')
  let r = cli('stat', 'clilog', '--json')
  if (r.status !== 0 || JSON.parse(r.stdout).lastLsn !== 230) fail('stat', r)
  r = cli('verify', 'clilog')
  if (r.status !== 0) fail('verify on a clean log', r)
  r = cli('dump', 'clilog', '--from', '229')
  if (r.stdout.trim() !== '229 del "k198"\n230 put "last" "end"') fail('dump', r)
  r = await cliAsync(['tail', 'clilog', '--from', '230'], (out) => out.includes('\n'))
  if (r.stdout.trim() !== '230 put "last" "end"') fail('tail', r)
  if (hash('clilog') !== before) fail('a command modified the log')
  const segs = segments('clilog')
  let kinds = 0
  for (const d of DAMAGE) {
    const dir = 'damaged-' + kinds++
    fs.cpSync('clilog', dir, { recursive: true })
    d.apply(dir)
    const h = hash(dir)
    r = cli('verify', dir, '--json')
    if (hash(dir) !== h) fail(d.name + ': verify modified the log')
    const findings = JSON.parse(r.stdout).findings
    if (r.status !== (d.kind === 'clean' ? 0 : 1)) fail(d.name + ': exit code', r)
    if (d.kind === 'clean') continue
    if (findings.length === 0 || findings.some((f) => f.open !== d.kind) || !findings.some((f) => f.segment === d.at(segs))) fail(d.name + ': judgement ' + d.kind + ' in ' + d.at(segs), r)
    const opened = await WriteAheadLog.open(dir).then((wal) => wal, (e) => e)
    if (d.kind === 'refuses (WAL_CORRUPT)') {
      if (opened.code !== 'WAL_CORRUPT') fail(d.name + ': open did not refuse')
      continue
    }
    let err
    try { for await (const e of opened.replay({ from: 0 })) void e } catch (e) { err = e }
    await opened.close()
    if (d.kind === 'cuts it (torn tail)' ? err !== undefined || cli('verify', dir).status !== 0 : err?.code !== 'WAL_CORRUPT') fail(d.name + ': open/replay disagree with verify')
  }
  // A live log: a writer appends while verify reads it.
  const live = await WriteAheadLog.open('livelog', { segmentSize: 4096 })
  let writing = true
  const writer = (async () => { for (let i = 0; writing; i++) await live.append({ type: 'put', key: 'k' + i, value: 'v'.repeat(i % 50) }) })()
  await new Promise((res) => setTimeout(res, 200))
  const v = await cliAsync(['verify', 'livelog', '--json'])
  writing = false
  await writer
  await live.close()
  if (v.status !== 0 || !JSON.parse(v.stdout).live) fail('verify on a live log', v)
  r = cli('dump')
  if (r.status !== 2) fail('bad usage: exit 2', r)
  console.log('stat, verify (' + DAMAGE.filter((d) => d.kind === 'clean').length + ' clean, ' + DAMAGE.filter((d) => d.kind !== 'clean').length + ' kinds of damage, live), dump, tail, bad usage (exit 2); nothing modified')
})()
EOF
if in_project node cli.cjs >"$work/cli.log" 2>&1; then ok "npx fastwal from the tarball: $(tail -n 1 "$work/cli.log")"; else bad "npx fastwal from the tarball" "$work/cli.log"; fi

# ---- 5. the shipped types, tsc --strict --noEmit -------------------------------------------
# The consumer gets typescript and @types/node from this repository's node_modules (same
# versions as the build) rather than a second registry install.
tsc="$root/node_modules/typescript/bin/tsc"
cat >"$project/consumer.mts" <<'EOF'
import { WriteAheadLog, WalError, crc32c, type Entry, type Batch, type Options, type Operation } from 'fastwal'

export async function main(dir: string): Promise<number> {
  const options: Options = { sync: 'interval', syncIntervalMs: 10, backend: 'auto', recovery: 'tolerate-tail' }
  await using wal = await WriteAheadLog.open(dir, options)
  const backend: 'native' | 'js' = wal.backend
  const lsn: number = await wal.append({ type: 'put', key: 'k', value: new Uint8Array([1]) })
  const ops: Operation[] = [{ type: 'del', key: 'k' }]
  const range: { first: number; last: number } = await wal.appendBatch(ops)
  for await (const e of wal.replay({ from: 0 })) {
    const entry: Entry = e
    const value: Buffer | undefined = entry.value
    void value
  }
  for await (const b of wal.replayBatches()) {
    const batch: Batch = b
    void batch.entries.length
  }
  // @ts-expect-error a put needs a value
  await wal.append({ type: 'put', key: 'k' })
  // @ts-expect-error backend is read-only
  wal.backend = 'js'
  try {
    wal.appendSync({ type: 'put', key: 'k', value: 'v' })
  } catch (err) {
    if (err instanceof WalError) {
      const code: string = err.code
      void code
    }
  }
  void backend
  return lsn + range.last + wal.checkpointLsn + wal.recovery.truncatedBytes + crc32c(Buffer.from('x'))
}
EOF
cat >"$project/consumer.cts" <<'EOF'
import fastwal = require('fastwal')

export function main(dir: string): number {
  const wal = fastwal.WriteAheadLog.openSync(dir, { backend: 'js', preallocate: false })
  const lsn: number = wal.appendSync({ type: 'put', key: 'k', value: 'v' })
  for (const e of wal.replaySync({ from: 0 })) {
    const key: Buffer = e.key
    void key
  }
  // @ts-expect-error 'fast' is not a sync mode
  fastwal.WriteAheadLog.openSync(dir, { sync: 'fast' })
  wal.closeSync()
  return lsn + fastwal.crc32c(new Uint8Array(4))
}
EOF
cat >"$project/consumer-node10.ts" <<'EOF'
import { WriteAheadLog, WalError } from 'fastwal'

export async function main(dir: string): Promise<'native' | 'js'> {
  const wal = await WriteAheadLog.open(dir)
  try {
    await wal.append({ type: 'del', key: new Uint8Array(0) })
  } catch (err) {
    if (err instanceof WalError && err.code === 'WAL_IO') throw err
  } finally {
    await wal.close()
  }
  return wal.backend
}
EOF
types=(--types node --typeRoots "$root/node_modules/@types")
if in_project node "$tsc" --strict --noEmit --target es2022 --module nodenext --moduleResolution nodenext "${types[@]}" consumer.mts consumer.cts >"$work/tsc.log" 2>&1 \
  && in_project node "$tsc" --strict --noEmit --target es2022 --module commonjs --moduleResolution node10 --esModuleInterop "${types[@]}" consumer-node10.ts >>"$work/tsc.log" 2>&1; then
  ok "tsc --strict --noEmit on consumer .mts/.cts (nodenext) and .ts (node10) against the shipped types"
else
  bad "tsc --strict --noEmit against the shipped types" "$work/tsc.log"
fi
# The encodings consumer (generics, narrowing, codecs), as ESM (nodenext) and as CommonJS (node10).
cp "$root/test/types/encodings.consumer.ts" "$project/encodings.mts"
cp "$root/test/types/encodings.consumer.ts" "$project/encodings-node10.ts"
if in_project node "$tsc" --strict --noEmit --target es2022 --module nodenext --moduleResolution nodenext "${types[@]}" encodings.mts >"$work/tsc-enc.log" 2>&1 \
  && in_project node "$tsc" --strict --noEmit --target es2022 --module commonjs --moduleResolution node10 --esModuleInterop "${types[@]}" encodings-node10.ts >>"$work/tsc-enc.log" 2>&1; then
  ok "tsc --strict --noEmit on the encodings consumer (WriteAheadLog<K, V>, Entry narrowing, codecs) against the shipped types"
else
  bad "tsc --strict --noEmit on the encodings consumer" "$work/tsc-enc.log"
fi

# ---- 6. the install script's source-build paths, still without a toolchain -----------------
pkgdir="$project/node_modules/fastwal"
if in_project FASTWAL_BUILD_FROM_SOURCE=1 npm rebuild fastwal --foreground-scripts >"$work/forced.log" 2>&1; then
  bad "a forced source build without a compiler should fail" "$work/forced.log"
elif grep -q 'source build forced' "$work/forced.log" && grep -q 'forced source build failed' "$work/forced.log"; then
  ok "FASTWAL_BUILD_FROM_SOURCE=1 without a compiler: says so and fails"
else
  bad "forced source build messages" "$work/forced.log"
fi
rm -rf "$pkgdir/build"
if in_project node smoke.cjs >"$work/cjs2.log" 2>&1; then ok "prebuild still used after the failed forced build"; else bad "prebuild after the failed forced build" "$work/cjs2.log"; fi

rm -rf "$pkgdir/prebuilds" "$pkgdir/build"
if in_project npm rebuild fastwal --foreground-scripts >"$work/noprebuild.log" 2>&1 \
  && grep -q "no usable prebuilt binary for $tuple" "$work/noprebuild.log" \
  && grep -q 'building the native addon failed; fastwal will use its pure-TypeScript backend' "$work/noprebuild.log"; then
  ok "no matching prebuild and no compiler: install says it builds from source, fails softly"
else
  bad "install without a matching prebuild" "$work/noprebuild.log"
fi
cat >"$project/fallback.cjs" <<'EOF'
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { WriteAheadLog, WalError } = require('fastwal')
const warnings = []
process.on('warning', (w) => warnings.push(w))
;(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fastwal-fallback-'))
  try {
    const wal = await WriteAheadLog.open(path.join(dir, 'a'))
    assert.equal(wal.backend, 'js')
    await wal.append({ type: 'put', key: 'k', value: 'v' })
    await wal.close()
    await (await WriteAheadLog.open(path.join(dir, 'b'))).close()
    await new Promise((r) => setImmediate(r))
    const mine = warnings.filter((w) => w.code === 'FASTWAL_NATIVE_UNAVAILABLE')
    assert.equal(mine.length, 1)
    assert.match(mine[0].message, /npm rebuild fastwal/)
    await assert.rejects(WriteAheadLog.open(path.join(dir, 'c'), { backend: 'native' }), (e) => e instanceof WalError && e.code === 'WAL_INVALID')
    console.log('fallback ok')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})().catch((e) => { console.error(e); process.exit(1) })
EOF
if in_project node fallback.cjs >"$work/fallback.log" 2>&1; then
  ok "without the addon: backend 'auto' -> 'js' with one FASTWAL_NATIVE_UNAVAILABLE warning; 'native' -> WAL_INVALID"
else
  bad "fallback in the installed package" "$work/fallback.log"
fi

# ---- 7. the from-source fallback compiles from what the tarball ships ----------------------
# With the prebuild gone (above), a compile from the shipped native/ sources and binding.gyp,
# with the machine's real toolchain, must give a working native backend. Skipped (not
# counted) where there is no toolchain.
if command -v make >/dev/null && command -v python3 >/dev/null && { command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null; }; then
  if (cd "$project" && FASTWAL_BUILD_FROM_SOURCE=1 npm rebuild fastwal --foreground-scripts >"$work/source.log" 2>&1) \
    && grep -q 'built the native addon from source' "$work/source.log" \
    && [ -f "$pkgdir/build/Release/fastwal.node" ] && [ ! -e "$pkgdir/prebuilds" ] \
    && in_project node smoke.cjs >>"$work/source.log" 2>&1; then
    ok "source build from the tarball's native/ + binding.gyp (toolchain on PATH): backend native"
  else
    bad "source build from the tarball's sources" "$work/source.log"
  fi
else
  echo "skip - source build from the tarball (no C++ toolchain on this machine)"
fi

finish
