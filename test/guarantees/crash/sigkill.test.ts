// Process crashes: a child appends with sync: 'always' (several appends and batches in
// flight) and is SIGKILLed at a random moment; every append it saw acknowledged must be
// replayed whole after a default open, and nothing partial may ever be visible.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import { join, resolve } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../../../lib/index.js'
import { PREALLOCATE_STEP } from '../../../lib/segments.js'
import { BACKENDS, prng, tmpDir, type BackendName } from '../../helpers/util.js'
import { hex, plainBatch, type PlainBatch } from './common.js'
import { genUnit, parseKey } from './fixtures/gen.js'

const ROOT = resolve(__dirname, '../../..')
const WRITER = join(__dirname, 'fixtures', 'writer.ts')
const CYCLES = 12
const SEED = 4242

interface Ack {
  cycle: number
  n: number
  first: number
  last: number
}

interface CycleResult {
  acks: Ack[]
  readyLsn: number
}

/** Kills the writer `delayMs` after it reports ready, or (early) after it is spawned. */
function runAndKill(args: Record<string, unknown>, delayMs: number, early: boolean): Promise<CycleResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['-r', 'tsx/cjs', WRITER, JSON.stringify(args)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    let readyLsn = -1
    let timer: NodeJS.Timeout | undefined
    const guard = setTimeout(() => child.kill('SIGKILL'), 15000) // never hang the suite
    if (early) timer = setTimeout(() => child.kill('SIGKILL'), delayMs)
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (d: string) => {
      out += d
      if (readyLsn < 0) {
        const m = /^ready (\d+)\n/.exec(out)
        if (m) {
          readyLsn = Number(m[1])
          if (!early) timer = setTimeout(() => child.kill('SIGKILL'), delayMs)
        }
      }
    })
    child.stderr.on('data', (d: string) => (err += d))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(guard)
      if (timer) clearTimeout(timer)
      if (signal !== 'SIGKILL' || (readyLsn < 0 && !early)) {
        reject(new Error(`writer ended with code ${code} signal ${signal} before it was killed:\n${out.slice(-2000)}\n${err.slice(-2000)}`))
        return
      }
      const acks: Ack[] = []
      // Only whole lines count: a line cut by the kill was not seen.
      for (const line of out.split('\n').slice(0, -1)) {
        const m = /^ack (\d+) (\d+) (\d+) (\d+)$/.exec(line)
        if (m) acks.push({ cycle: Number(m[1]), n: Number(m[2]), first: Number(m[3]), last: Number(m[4]) })
        else if (!line.startsWith('ready ')) reject(new Error(`writer said: ${line}`))
      }
      resolvePromise({ acks, readyLsn })
    })
  })
}

interface Seen {
  batch: PlainBatch
  cycle: number
  n: number
}

/** Replays everything, checking each batch is a whole generated unit; returns them. */
async function verify(dir: string, backend: BackendName, readOnly: boolean, where: string, maxValue?: number): Promise<Seen[]> {
  const wal = await WriteAheadLog.open(dir, { backend, readOnly })
  const seen: Seen[] = []
  try {
    let prevLast = 0
    for await (const b of wal.replayBatches({ from: 0 })) {
      const id = parseKey(b.entries[0].key)
      assert.ok(id, `${where}: batch ${b.first} has a generated key`)
      const u = genUnit(SEED, id!.cycle, id!.n, maxValue)
      const want: PlainBatch = {
        first: b.first,
        last: b.first + u.ops.length - 1,
        entries: u.ops.map((op, i) => ({ lsn: b.first + i, type: op.type, key: hex(op.key), value: op.type === 'put' ? hex(op.value) : undefined })),
      }
      assert.equal(plainBatch(b), want, `${where}: batch ${b.first} is unit ${id!.cycle}/${id!.n}, whole and unaltered`)
      assert.ok(b.first > prevLast, `${where}: LSNs increase`)
      prevLast = b.last
      seen.push({ batch: plainBatch(b), cycle: id!.cycle, n: id!.n })
    }
    assert.ok(wal.lastLsn >= prevLast, `${where}: lastLsn ${wal.lastLsn} covers the replayed ${prevLast}`)
  } finally {
    await wal.close()
  }
  return seen
}

interface Shape {
  cycles: number
  seed: number
  segmentSize: (rand: () => number) => number
  maxValue?: number
}

async function killCycles(backend: BackendName, shape: Shape): Promise<void> {
  {
    const { cycles: CYCLES, maxValue } = shape
    const dir = tmpDir(`sigkill-${backend}`)
    const rand = prng(shape.seed)
    const acked = new Map<string, Ack>() // "cycle/n" -> ack
    let totalAcks = 0
    let prevVisibleMax = 0
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const args = {
        dir,
        backend,
        seed: SEED,
        cycle,
        inflight: 1 + (rand() % 8),
        segmentSize: shape.segmentSize(rand),
        preallocate: cycle % 2 === 0,
        maxValue,
      }
      // Every third run is killed at a random time after spawn: during startup, open and
      // its repair, or soon after.
      const early = cycle % 3 === 2
      const delay = early ? rand() % 600 : 10 + (rand() % 250)
      const where = `${backend} cycle ${cycle} (${JSON.stringify({ ...args, dir: undefined })}, killed ${delay} ms after ${early ? 'spawn' : 'open'})`
      const r = await runAndKill(args, delay, early)
      if (r.readyLsn >= 0) assert.ok(r.readyLsn >= prevVisibleMax, `${where}: reopened with lastLsn ${r.readyLsn} >= ${prevVisibleMax} seen before`)
      for (const a of r.acks) {
        assert.is(a.cycle, cycle)
        assert.ok(a.first > prevVisibleMax, `${where}: acknowledged LSN ${a.first} not reused (previous maximum ${prevVisibleMax})`)
        assert.is(a.last - a.first + 1, genUnit(SEED, cycle, a.n, maxValue).ops.length, `${where}: batch of n ops gets n consecutive LSNs`)
        acked.set(`${a.cycle}/${a.n}`, a)
      }
      totalAcks += r.acks.length

      // Read-only first (modifies nothing), then a default writable open that repairs.
      for (const readOnly of [true, false]) {
        const seen = await verify(dir, readOnly ? (backend === 'native' ? 'js' : 'native') : backend, readOnly, `${where}${readOnly ? ' readOnly' : ''}`, maxValue)
        const byId = new Map(seen.map((s) => [`${s.cycle}/${s.n}`, s]))
        assert.is(byId.size, seen.length, `${where}: each unit appears once`)
        for (const [id, a] of acked) {
          const s = byId.get(id)
          assert.ok(s, `${where}: acknowledged unit ${id} (LSN ${a.first}..${a.last}) is replayed`)
          assert.is(s!.batch.first, a.first, `${where}: unit ${id} at its acknowledged LSN`)
          assert.is(s!.batch.last, a.last)
        }
        // Call order is LSN order, and a process crash leaves a prefix of each run's calls.
        const thisRun = seen.filter((s) => s.cycle === cycle).map((s) => s.n)
        assert.equal(thisRun, thisRun.map((_, i) => i), `${where}: the units of this run form a prefix of its calls, in order`)
        if (!readOnly) prevVisibleMax = Math.max(prevVisibleMax, ...seen.map((s) => s.batch.last))
      }
    }
    assert.ok(totalAcks >= CYCLES, `enough acknowledged appends to mean something (${totalAcks})`)
    if (shape.maxValue) {
      // The run went past the first preallocation step of a segment: extensions ran.
      const sizes = fs.readdirSync(dir).filter((n) => n.endsWith('.wal')).map((n) => fs.statSync(join(dir, n)).size)
      assert.ok(Math.max(...sizes) > PREALLOCATE_STEP, `a segment grew past ${PREALLOCATE_STEP} bytes (sizes ${sizes.join(', ')})`)
    }
  }
}

for (const backend of BACKENDS) {
  test(`${backend}: SIGKILL during sync: 'always' appends never loses an acknowledged append nor shows a partial batch`, () =>
    killCycles(backend, { cycles: CYCLES, seed: backend === 'native' ? 9001 : 9002, segmentSize: (rand) => 4096 * (1 + (rand() % 4)) }))

  // Segments larger than one preallocation step: zeros are appended ahead of the records on
  // the thread pool while they are written, and rotations cut segments after an extension.
  test(`${backend}: SIGKILL while zeros are appended ahead of the records (8-12 MiB segments, values up to 256 KiB) loses no acknowledged append`, () =>
    killCycles(backend, { cycles: 8, seed: backend === 'native' ? 9101 : 9102, segmentSize: (rand) => (8 + (rand() % 5)) * 1024 * 1024, maxValue: 256 * 1024 }))
}

test.run()
