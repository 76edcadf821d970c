// Real I/O failure without root: a writer child runs under a file-size limit (`ulimit -f`),
// so a write past it fails with EFBIG. The append it hits rejects with WAL_IO carrying the
// OS error, later appends get WAL_FAILED, close resolves, and a reopen keeps every
// acknowledged entry.
import { spawn } from 'node:child_process'
import { join, resolve } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../../../lib/index.js'
import { BACKENDS, tmpDir, type BackendName } from '../../helpers/util.js'
import { hex, plainBatch } from './common.js'
import { genUnit, parseKey } from './fixtures/gen.js'

// `ulimit -f` and SIGXFSZ are POSIX: on Windows these tests are skipped, visibly.
const posixTest = process.platform === 'win32' ? test.skip : test

const ROOT = resolve(__dirname, '../../..')
const CHILD = join(__dirname, 'fixtures', 'efbig-writer.ts')
const LIMIT_KB = 64
const SEED = 777

type Line = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

function runLimited(args: Record<string, unknown>): Promise<{ lines: Line[]; code: number | null; signal: string | null; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn('bash', ['-c', `ulimit -f ${LIMIT_KB} && exec "$0" -r tsx/cjs "$1"`, process.execPath, CHILD], {
      cwd: ROOT,
      env: { ...process.env, FASTWAL_EFBIG_ARGS: JSON.stringify(args) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    const guard = setTimeout(() => child.kill('SIGKILL'), 20000)
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
    child.on('error', fail)
    child.on('close', (code, signal) => {
      clearTimeout(guard)
      const lines: Line[] = []
      for (const l of out.split('\n')) if (l) lines.push(JSON.parse(l))
      done({ lines, code, signal, stderr: err })
    })
  })
}

function assertIoEfbig(d: Line, where: string): void {
  assert.is(d.code, 'WAL_IO', `${where}: code (${d.message ?? d.notWalError})`)
  assert.type(d.syscall, 'string', `${where}: syscall is set`)
  assert.ok(d.syscall.length > 0 && d.syscall !== 'unknown', `${where}: syscall names the call (${d.syscall})`)
  assert.is(d.causeCode, 'EFBIG', `${where}: cause.code`)
}

/** Reopens without the limit; every acknowledged unit is whole at its LSN, nothing partial. */
async function reopenAndCheck(dir: string, backend: BackendName, cycle: number, acks: [number, number, number][], where: string): Promise<void> {
  const wal = await WriteAheadLog.open(dir, { backend, preallocate: false })
  const seen = new Map<number, { first: number; last: number }>()
  let prev = 0
  for await (const b of wal.replayBatches({ from: 0 })) {
    const id = parseKey(b.entries[0].key)
    assert.ok(id && id.cycle === cycle, `${where}: batch ${b.first} is a generated unit`)
    const u = genUnit(SEED, cycle, id!.n)
    assert.equal(
      plainBatch(b),
      {
        first: b.first,
        last: b.first + u.ops.length - 1,
        entries: u.ops.map((op, i) => ({ lsn: b.first + i, type: op.type, key: hex(op.key), value: op.type === 'put' ? hex(op.value) : undefined })),
      },
      `${where}: unit ${id!.n} whole and unaltered`,
    )
    assert.ok(b.first > prev, `${where}: increasing LSNs`)
    prev = b.last
    assert.not.ok(seen.has(id!.n), `${where}: unit ${id!.n} once`)
    seen.set(id!.n, { first: b.first, last: b.last })
  }
  for (const [n, first, last] of acks) assert.equal(seen.get(n), { first, last }, `${where}: acknowledged unit ${n} (LSN ${first}..${last}) survives`)
  const lsn = await wal.append({ type: 'put', key: 'after', value: 'reopen' })
  assert.ok(lsn > prev && lsn > Math.max(0, ...acks.map((a) => a[2])), `${where}: appending after the reopen works (LSN ${lsn})`)
  await wal.close()
}

for (const backend of BACKENDS) {
  for (const mode of ['async', 'sync', 'prealloc-existing'] as const) {
    posixTest(`${backend}, ${mode}: a write failing with EFBIG rejects with WAL_IO, then WAL_FAILED; reopen keeps every acknowledged entry`, async () => {
      const dir = tmpDir(`efbig-${backend}-${mode}`)
      const cycle = mode === 'async' ? 1 : mode === 'sync' ? 2 : 3
      const segmentSize = mode === 'prealloc-existing' ? 2 * LIMIT_KB * 1024 : 1024 * 1024
      if (mode === 'prealloc-existing') {
        // The first segment exists (preallocated past the limit) before the limited child opens it.
        const w = await WriteAheadLog.open(dir, { backend, preallocate: true, segmentSize })
        await w.close()
      }
      const r = await runLimited({ dir, backend, mode, seed: SEED, cycle, inflight: mode === 'async' ? 4 : 1, segmentSize })
      const where = `${backend} ${mode}`
      assert.is(r.code, 0, `${where}: child exits normally (signal ${r.signal}):\n${JSON.stringify(r.lines.slice(-3))}\n${r.stderr.slice(-2000)}`)
      assert.ok(r.lines[0]?.ready !== undefined, `${where}: child opened the log: ${JSON.stringify(r.lines[0])}`)
      const acks = r.lines.filter((l) => l.ack).map((l) => l.ack as [number, number, number])
      const rejs = r.lines.filter((l) => l.rej).map((l) => l.rej as [number, Line])
      assert.ok(acks.length > 10, `${where}: appends were acknowledged before the limit (${acks.length})`)
      assert.ok(rejs.length >= 1, `${where}: the limit was hit`)
      for (const [n, d] of rejs) assertIoEfbig(d, `${where}: append ${n} pending at the failure`)
      const after = r.lines.find((l) => l.after)?.after
      assert.ok(after, `${where}: child reported the later calls`)
      for (const k of ['append', 'appendBatch', 'appendSync', 'appendBatchSync']) assert.is(after[k].code, 'WAL_FAILED', `${where}: ${k} after the failure (${after[k].message})`)
      assert.not.ok(after.sync.ok, `${where}: sync() after the failure must not report success`)
      assert.ok(['WAL_FAILED', 'WAL_IO'].includes(after.sync.code), `${where}: sync() after the failure: ${after.sync.code}`)
      assert.not.ok(after.checkpoint.ok, `${where}: checkpoint after the failure must not succeed`)
      const closed = r.lines.find((l) => l.closed)
      assert.ok(closed, `${where}: close() resolved`)
      assert.is(closed!.afterClose.code, 'WAL_CLOSED', `${where}: append after close`)
      await reopenAndCheck(dir, backend, cycle, acks, where)
    })
  }

  posixTest(`${backend}: an open that cannot preallocate its first segment rejects with WAL_IO and releases the lock`, async () => {
    const dir = tmpDir(`efbig-${backend}-open`)
    const r = await runLimited({ dir, backend, mode: 'prealloc-open', seed: SEED, cycle: 4, inflight: 1, segmentSize: 4 * LIMIT_KB * 1024 })
    const where = `${backend} prealloc-open`
    assert.is(r.code, 0, `${where}: child exits normally (signal ${r.signal}):\n${JSON.stringify(r.lines)}\n${r.stderr.slice(-2000)}`)
    const failed = r.lines.find((l) => l.openFailed)
    assert.ok(failed, `${where}: open failed: ${JSON.stringify(r.lines)}`)
    assertIoEfbig(failed!.openFailed, `${where}: open`)
    const reopened = r.lines.find((l) => l.reopened !== undefined)
    assert.ok(reopened, `${where}: a later open in the same process worked`)
    const wal = await WriteAheadLog.open(dir, { backend })
    const got = []
    for await (const e of wal.replay({ from: 0 })) got.push([e.lsn, e.key.toString()])
    assert.equal(got, [[reopened!.reopened, 'after-failed-open']], `${where}: the log holds what was appended after`)
    await wal.close()
  })
}

test.run()
