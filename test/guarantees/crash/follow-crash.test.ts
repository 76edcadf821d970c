// A follower in one process, the writer in another: the readOnly follower sees every
// committed entry once, in order, across rotations, yielding only what the writer made
// durable; and it survives the writer being SIGKILLed and restarted, continuing from the
// right LSN with nothing duplicated or skipped.
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, type Entry } from '../../../lib/index.js'
import { BACKENDS, tmpDir } from '../../helpers/util.js'

const ROOT = join(__dirname, '..', '..', '..')
const WRITER = join(__dirname, 'fixtures', 'follow-writer.ts')

interface Writer {
  child: ChildProcess
  /** Resolves with the next key index once the writer printed `ready`. */
  ready: Promise<number>
  /** Resolves when it printed `done` or exited. */
  exited: Promise<number | null>
  acked(): number
}

function startWriter(dir: string, backend: string, count: number): Writer {
  const child = spawn(process.execPath, ['-r', 'tsx/cjs', WRITER, JSON.stringify({ dir, backend, count, segmentSize: 4096 })], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let acked = 0
  let buf = ''
  let stderr = ''
  let onReady!: (n: number) => void
  const ready = new Promise<number>((r) => (onReady = r))
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      if (line.startsWith('ready ')) onReady(Number(line.slice(6)))
      else if (line.startsWith('ack ')) acked = Number(line.slice(4))
    }
  })
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      if (code !== 0 && code !== null) process.stderr.write(`follow-writer exited ${code}: ${stderr}\n`)
      resolve(code)
    }),
  )
  return { child, ready, exited, acked: () => acked }
}

/** Follows until `n` entries are seen (or `ms` pass); checks order and uniqueness as it goes. */
async function followUntil(it: AsyncIterator<Entry>, seen: Entry[], n: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (seen.length < n) {
    const left = deadline - Date.now()
    if (left <= 0) throw new Error(`followed ${seen.length} of ${n} entries in ${ms} ms`)
    let timer: NodeJS.Timeout | undefined
    const r = await Promise.race([it.next(), new Promise<'timeout'>((res) => (timer = setTimeout(() => res('timeout'), left)))])
    clearTimeout(timer)
    if (r === 'timeout') continue
    if (r.done) throw new Error(`the follower ended after ${seen.length} entries`)
    const e = r.value
    const k = seen.length
    assert.is(e.key.toString(), `k${k}`, `entry ${k}: a key skipped or repeated`)
    if (k > 0) assert.ok(e.lsn > seen[k - 1].lsn, `entry ${k}: LSN order`)
    seen.push(e)
  }
}

for (const backend of BACKENDS) {
  test(`[${backend}] a readOnly follower sees every entry a writer in another process appends, once, in order, across rotations`, async () => {
    const dir = tmpDir()
    const w = startWriter(dir, backend, 1500)
    await w.ready
    const ro = await WriteAheadLog.open(dir, { backend, readOnly: true })
    const it = ro.follow({ from: 0 })
    const seen: Entry[] = []
    try {
      await followUntil(it, seen, 1500, 60_000)
      assert.is(await w.exited, 0)
      assert.ok(fs.readdirSync(dir).filter((n) => n.endsWith('.wal')).length >= 10, 'the writer rotated')
    } finally {
      w.child.kill('SIGKILL')
      await ro.close()
    }
  })

  test(`[${backend}] a follower survives the writer's SIGKILL and restart: nothing duplicated or skipped`, async () => {
    const dir = tmpDir()
    let w = startWriter(dir, backend, 0)
    await w.ready
    const ro = await WriteAheadLog.open(dir, { backend, readOnly: true })
    const it = ro.follow({ from: 0 })
    const seen: Entry[] = []
    try {
      for (let round = 0; round < 3; round++) {
        await followUntil(it, seen, seen.length + 200, 60_000)
        w.child.kill('SIGKILL')
        await w.exited
        w = startWriter(dir, backend, 300)
        const next = await w.ready
        // Everything the follower saw was durable, so the restarted writer kept it.
        assert.ok(next >= seen.length, `the writer restarted at k${next} but the follower had seen k${seen.length - 1}`)
        await followUntil(it, seen, next + 300, 60_000)
        assert.is(await w.exited, 0)
        w = startWriter(dir, backend, 0)
        await w.ready
      }
    } finally {
      w.child.kill('SIGKILL')
      await ro.close()
    }
  })
}

test.run()
