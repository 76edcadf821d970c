// Input validation (lib/options.ts): every bad input is WAL_INVALID (or WAL_TOO_LARGE) with
// nothing written and no LSN consumed; the bytes taken are the bytes measured.
import * as fs from 'node:fs'
import { join } from 'node:path'
import * as vm from 'node:vm'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError } from '../lib/index.js'
import { BACKENDS, segmentFiles, tmpDir } from './helpers/util.js'
import { code, codeOf } from './helpers/wal.js'

function detached(): Uint8Array {
  const b = new Uint8Array(8)
  structuredClone(b.buffer, { transfer: [b.buffer] })
  return b
}

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)

  // Proxies, detached buffers, other views than Uint8Array and a `del` with a value are
  // refused before anything is encoded; a Uint8Array from another realm is a Uint8Array.
  t('bad inputs are WAL_INVALID, write nothing and consume no LSN', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, preallocate: false })
    await wal.append({ type: 'put', key: 'a', value: '1' })
    const size = fs.statSync(join(dir, segmentFiles(dir)[0])).size
    const proxy = new Proxy(new Uint8Array([1, 2, 3]), {})
    const foreign = vm.runInNewContext('new Uint8Array([1, 2, 3])') as Uint8Array
    const bad: unknown[] = [
      { type: 'put', key: proxy, value: 'v' },
      { type: 'put', key: 'k', value: detached() },
      { type: 'del', key: detached() },
      { type: 'del', key: 'k', value: 'dropped?' },
      { type: 'put', key: new DataView(new ArrayBuffer(2)), value: 'v' },
      { type: 'put', key: new Uint16Array(2), value: 'v' },
    ]
    for (const op of bad) {
      assert.is(code(() => wal.appendSync(op as never)), 'WAL_INVALID', String(op))
      assert.is(await codeOf(wal.append(op as never)), 'WAL_INVALID')
      assert.is(code(() => wal.appendBatchSync([{ type: 'put', key: 'x', value: 'y' }, op as never])), 'WAL_INVALID')
    }
    assert.is(wal.lastLsn, 1)
    assert.is(fs.statSync(join(dir, segmentFiles(dir)[0])).size, size)
    // A Uint8Array from another realm is a Uint8Array.
    assert.is(wal.appendSync({ type: 'put', key: foreign, value: foreign }), 2)
    await wal.close()
    const re = await WriteAheadLog.open(dir, { backend, readOnly: true })
    const last = [...re.replaySync({ from: 2 })][0]
    assert.equal([...last.key], [1, 2, 3])
    await re.close()
  })

  // Each key and value is measured once, through the engine's own typed-array slots, after
  // every operation's fields were read: a getter or a subclass whose length lies cannot make
  // the bytes written differ from the bytes measured, pass maxRecordSize or overflow a segment.
  t('a batch whose later getter grows an earlier key keeps the size it measured; rotation loses nothing', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize: 8192, preallocate: false, maxRecordSize: 1000 })
    const acked: number[] = []
    for (let i = 0; i < 140; i++) acked.push(await wal.append({ type: 'put', key: `k${i}`, value: 'v'.repeat(20) }))
    // Every operation's fields are read before any is measured, so a getter that grows an
    // earlier key is seen: past maxRecordSize the batch is refused whole, nothing written.
    const ab = new ArrayBuffer(16, { maxByteLength: 64 * 1024 })
    const growing = new Uint8Array(ab) // length-tracking
    const grower = (to: number) => ({
      type: 'put',
      key: 'later',
      get value() {
        ab.resize(to)
        return 'v'
      },
    })
    const lastBefore = wal.lastLsn
    assert.is(await codeOf(wal.appendBatch([{ type: 'put', key: growing, value: 'x' }, grower(60 * 1024) as never])), 'WAL_TOO_LARGE')
    assert.is(wal.lastLsn, lastBefore)
    ab.resize(16)
    // Within the limit, what is written is what was measured, and rotation loses nothing.
    const r = await wal.appendBatch([{ type: 'put', key: growing, value: 'x' }, grower(900) as never])
    assert.is(r.last - r.first, 1)
    ab.resize(5) // after the call: the log keeps the bytes it took
    // Past the size limit from the start: refused.
    const big = new Uint8Array(new ArrayBuffer(2000, { maxByteLength: 4000 }))
    assert.is(await codeOf(wal.append({ type: 'put', key: big, value: '' })), 'WAL_TOO_LARGE')
    // A subclass whose length lies: the real bytes are what is measured and written.
    class Liar extends Uint8Array {
      override get length(): number {
        return 3
      }
    }
    const liar = new Liar(5000)
    assert.is(await codeOf(wal.append({ type: 'put', key: liar, value: '' })), 'WAL_TOO_LARGE')
    const small = new Liar([1, 2, 3, 4, 5, 6, 7])
    const lsn = await wal.append({ type: 'put', key: small, value: 'v' })
    for (let i = 0; i < 200; i++) await wal.append({ type: 'put', key: `z${i}`, value: 'w'.repeat(30) }) // rotations
    await wal.close()
    const re = await WriteAheadLog.open(dir, { backend, segmentSize: 8192, preallocate: false, recovery: 'strict' })
    const all = [...re.replaySync({ from: 0 })]
    assert.is(all.length, 140 + 2 + 1 + 200)
    const batchKey = all.find((e) => e.lsn === r.first)!.key
    assert.is(batchKey.length, 900, 'the key as measured during appendBatch')
    assert.equal([...all.find((e) => e.lsn === lsn)!.key], [1, 2, 3, 4, 5, 6, 7])
    await re.close()
  })
}

test.run()
