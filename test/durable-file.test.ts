// The DURABLE file: the writer's durable LSN for readers in other processes. With the native
// backend each commit's own pool job writes it right after its sync (no second job per
// commit); the pure-TS backend rewrites it after the commit, coalesced. Either way it never
// runs ahead of what is acknowledged and ends at the last durable LSN.
import { createHook } from 'node:async_hooks'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { pbkdf2, pbkdf2Sync } from 'node:crypto'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../lib/index.js'
import { readDurable } from '../lib/durable-file.js'
import { loadAddon, type NativeAddon } from '../lib/native-addon.js'
import { BACKENDS, backendImpl, tmpDir } from './helpers/util.js'

type Patchable = { -readonly [K in keyof NativeAddon]: NativeAddon[K] }

/** pbkdf2 iterations that take about `ms` on this machine. */
function pbkdf2Iterations(ms: number): number {
  let iterations = 1000
  for (;;) {
    const t0 = performance.now()
    pbkdf2Sync('x', 'y', iterations, 16, 'sha256')
    const took = performance.now() - t0
    if (took > 5) return Math.ceil((iterations * ms) / took)
    iterations *= 2
  }
}

/** Keeps every libuv pool thread busy for about `ms` (pbkdf2 runs on the pool). */
function occupyThreadPool(ms: number): Promise<void> {
  const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4
  const iterations = pbkdf2Iterations(ms)
  return Promise.all(Array.from({ length: threads }, () => new Promise<void>((res) => pbkdf2('x', 'y', iterations, 16, 'sha256', () => res())))).then(() => undefined)
}

/** Runs fn with the shared addon's functions replaced as `patch` says, restoring them after. */
async function withAddon(patch: (addon: Patchable, orig: NativeAddon) => void, fn: () => Promise<void>): Promise<void> {
  const addon = loadAddon().addon as unknown as Patchable
  const orig = { ...addon } as NativeAddon
  patch(addon, orig)
  try {
    await fn()
  } finally {
    Object.assign(addon, orig)
  }
}

/** Counts the node:fs requests to the thread pool (FSREQCALLBACK) made while `fn` runs. */
async function countFsRequests(fn: () => Promise<void>): Promise<number> {
  let n = 0
  const hook = createHook({
    init(_id, type) {
      if (type === 'FSREQCALLBACK') n++
    },
  }).enable()
  try {
    await fn()
  } finally {
    hook.disable()
  }
  return n
}

if (process.platform === 'linux') {
  test('native: DURABLE holds each acknowledged LSN when its append resolves, written by the commit job itself (no node:fs request per commit)', async () => {
    const dir = tmpDir('durable-native')
    const wal = await WriteAheadLog.open(dir, { backend: 'native' })
    const backend = backendImpl('native')
    const seen: [number, number | undefined][] = []
    const requests = await countFsRequests(async () => {
      for (let i = 0; i < 50; i++) {
        const lsn = await wal.append({ type: 'put', key: Buffer.from(`k${i}`), value: Buffer.from('v') })
        seen.push([lsn, readDurable(dir, backend)])
      }
      const { last } = await wal.appendBatch([
        { type: 'put', key: Buffer.from('a'), value: Buffer.from('1') },
        { type: 'del', key: Buffer.from('b') },
      ])
      seen.push([last, readDurable(dir, backend)])
    })
    await wal.close()
    assert.equal(
      seen.filter(([lsn, durable]) => durable !== lsn),
      [],
      'DURABLE equals the LSN just acknowledged',
    )
    assert.ok(requests < 5, `no separate write of DURABLE per commit: ${requests} node:fs requests for 51 commits`)
    assert.is(readDurable(dir, backend), seen[seen.length - 1][0])
  })
}

if (process.platform === 'linux') {
  test('native: a commit job that publishes after closeSync cannot leave DURABLE at an LSN that was not acknowledged (a blocking sync failed meanwhile)', async () => {
    const dir = tmpDir('durable-failed-close')
    const backend = backendImpl('native')
    let failBlocking = false
    let armed = false // from the second append on
    let wal: WriteAheadLog | undefined
    await withAddon(
      (addon, orig) => {
        addon.fdatasyncBlocking = (fd) => {
          if (failBlocking) throw Object.assign(new Error('EIO (injected)'), { code: 'EIO', errno: -5, syscall: 'fdatasync' })
          orig.fdatasyncBlocking(fd)
        }
        addon.write = (...args: Parameters<NativeAddon['write']>) => {
          const p = orig.write(...args)
          if (armed && args[6] !== undefined) {
            // The pool job claimed the publish; its sync and publish go ahead while a blocking
            // append fails and the handle is closed on this thread.
            armed = false
            queueMicrotask(() => {
              failBlocking = true
              assert.throws(() => wal!.appendSync({ type: 'put', key: Buffer.from('c'), value: Buffer.from('3') }))
              wal!.closeSync()
            })
          }
          return p
        }
      },
      async () => {
        wal = await WriteAheadLog.open(dir, { backend: 'native' })
        await wal.append({ type: 'put', key: Buffer.from('a'), value: Buffer.from('1') })
        armed = true
        // The thread pool is kept busy, so the claimed job runs only after closeSync.
        const busy = occupyThreadPool(100)
        await wal.append({ type: 'put', key: Buffer.from('b'), value: Buffer.alloc(1 << 20, 7) }).catch(() => undefined)
        await busy
        await new Promise((r) => setTimeout(r, 50))
      },
    )
    assert.is(wal!.durableLsn, 1, 'only LSN 1 was acknowledged')
    assert.is(readDurable(dir, backend), 1, 'DURABLE holds the acknowledged LSN, not the one the failed writer never acknowledged')
  })

  test('native: the same, when the process exits right after closeSync (no callback runs): the late write lands in a replaced file', () => {
    const dir = tmpDir('durable-failed-exit')
    const iterations = pbkdf2Iterations(100)
    // The child: as the test above, then a synchronous wait while the job ends, then exit.
    const child = `
      const { loadAddon } = require('./lib/native-addon.ts')
      const { WriteAheadLog } = require('./lib/index.ts')
      const addon = loadAddon().addon
      const orig = { ...addon }
      let failBlocking = false, armed = false, wal
      addon.fdatasyncBlocking = (fd) => { if (failBlocking) throw Object.assign(new Error('EIO (injected)'), { code: 'EIO', errno: -5, syscall: 'fdatasync' }); orig.fdatasyncBlocking(fd) }
      addon.write = (...args) => {
        const p = orig.write(...args)
        if (armed && args[6] !== undefined) {
          armed = false
          queueMicrotask(() => {
            failBlocking = true
            try { wal.appendSync({ type: 'put', key: Buffer.from('c'), value: Buffer.from('3') }) } catch {}
            wal.closeSync()
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400)
            process.stdout.write(String(wal.durableLsn))
            process.exit(0)
          })
        }
        return p
      }
      ;(async () => {
        wal = await WriteAheadLog.open(${JSON.stringify(dir)}, { backend: 'native' })
        await wal.append({ type: 'put', key: Buffer.from('a'), value: Buffer.from('1') })
        armed = true
        // Every pool thread busy (~100 ms): the claimed job runs after closeSync.
        for (let i = 0; i < 4; i++) require('node:crypto').pbkdf2('x', 'y', ${iterations}, 16, 'sha256', () => {})
        await wal.append({ type: 'put', key: Buffer.from('b'), value: Buffer.alloc(1 << 20, 7) }).catch(() => {})
      })()`
    const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', child], { cwd: join(__dirname, '..'), encoding: 'utf8' })
    assert.is(r.status, 0, r.stderr)
    assert.is(r.stdout, '1', 'only LSN 1 was acknowledged')
    assert.is(readDurable(dir, backendImpl('native')), 1, 'DURABLE holds it, though the failed job wrote its LSN after close')
  })

  test('native: a commit job still in flight when closeSync releases the lock cannot overwrite the next writer\'s DURABLE', async () => {
    const dir = tmpDir('durable-reopen')
    const backend = backendImpl('native')
    let armed = false // from the second append on
    let wal: WriteAheadLog | undefined
    let next: WriteAheadLog | undefined
    await withAddon(
      (addon, orig) => {
        addon.write = (...args: Parameters<NativeAddon['write']>) => {
          const p = orig.write(...args)
          if (!armed || args[6] === undefined) return p
          armed = false
          queueMicrotask(() => {
            wal!.appendSync({ type: 'put', key: Buffer.from('x'), value: Buffer.from('3') }) // the old handle's last LSN is past the job's
            wal!.closeSync()
            next = WriteAheadLog.openSync(dir, { backend: 'native' })
          })
          // The old job ends late, as a slow fdatasync would (its publish is made by then).
          return p.then((r) => new Promise<boolean>((res) => setTimeout(() => res(r), 150)))
        }
      },
      async () => {
        wal = await WriteAheadLog.open(dir, { backend: 'native' })
        await wal.append({ type: 'put', key: Buffer.from('a'), value: Buffer.from('1') })
        armed = true
        wal.append({ type: 'put', key: Buffer.from('b'), value: Buffer.from('2') }).catch(() => undefined)
        while (!next) await new Promise((r) => setTimeout(r, 1))
        await next.append({ type: 'put', key: Buffer.from('c'), value: Buffer.from('3') })
        await new Promise((r) => setTimeout(r, 300)) // the old job has ended
      },
    )
    assert.is(readDurable(dir, backend), next!.durableLsn, 'DURABLE is the new writer\'s durable LSN')
    await next!.close()
    assert.is(readDurable(dir, backend), next!.durableLsn)
  })
}

for (const name of BACKENDS) {
  test(`${name}: DURABLE never runs ahead of durableLsn and ends at it, with appends overlapping and blocking syncs in between`, async () => {
    const dir = tmpDir(`durable-${name}`)
    const wal = await WriteAheadLog.open(dir, { backend: name })
    const backend = backendImpl(name)
    const ahead: string[] = []
    const check = () => {
      const d = readDurable(dir, backend)
      if (d !== undefined && d > wal.durableLsn) ahead.push(`${d} > ${wal.durableLsn}`)
    }
    for (let round = 0; round < 20; round++) {
      const pending = Array.from({ length: 20 }, (_, i) => wal.append({ type: 'put', key: Buffer.from(`k${round}-${i}`), value: Buffer.from('v') }).then(check))
      if (round % 3 === 0) wal.appendSync({ type: 'put', key: Buffer.from(`s${round}`), value: Buffer.from('v') }) // a blocking commit while the pool one is in flight
      check()
      await Promise.all(pending)
    }
    await wal.sync()
    await new Promise((r) => setTimeout(r, 20)) // the pure-TS backend's rewrite is asynchronous
    assert.equal(ahead, [], 'never ahead')
    assert.is(readDurable(dir, backend), wal.durableLsn, 'ends at the durable LSN')
    await wal.close()
    assert.is(readDurable(dir, backend), wal.durableLsn)
  })
}

test.run()
