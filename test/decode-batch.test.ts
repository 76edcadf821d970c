// decodeBatch (lib/decode-batch.ts): a shipped batch's body, its records exactly as on disk,
// back into the Batch; anything else is WAL_CORRUPT.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog, WalError, decodeBatch, type Batch } from '../lib/index.js'
import type { RawBatch } from '../lib/record-cursor.js'
import { FOLLOW_RAW } from '../lib/replay.js'
import { BACKENDS, tmpDir } from './helpers/util.js'

function plain(b: Batch) {
  return { first: b.first, last: b.last, entries: b.entries.map((e) => ({ lsn: e.lsn, type: e.type, key: e.key.toString(), value: e.value?.toString() })) }
}

function corruptCode(bytes: Uint8Array): string {
  try {
    decodeBatch(bytes)
    return 'decoded'
  } catch (err) {
    assert.instance(err, WalError)
    return (err as WalError).code
  }
}

for (const backend of BACKENDS) {
  test(`[${backend}] the raw bytes of every followed batch decode back to that batch; damage is WAL_CORRUPT`, async () => {
    const wal = await WriteAheadLog.open(tmpDir(), { backend, segmentSize: 4096, preallocate: false })
    await wal.append({ type: 'put', key: 'solo', value: 'v1' })
    await wal.appendBatch([
      { type: 'put', key: 'a', value: 'x'.repeat(3000) },
      { type: 'del', key: 'b' },
      { type: 'put', key: '', value: '' },
    ])
    await wal.append({ type: 'del', key: 'gone' })
    for (let i = 0; i < 40; i++) await wal.appendBatch([{ type: 'put', key: `k${i}`, value: 'y'.repeat(i * 10) }, { type: 'put', key: `j${i}`, value: 'z' }])
    const raw: RawBatch[] = []
    const it = wal[FOLLOW_RAW](1)
    for (let r = await it.next(); !r.done; r = await it.next()) {
      raw.push(r.value)
      if (r.value.last === wal.lastLsn) break
    }
    await it.return!()
    const replayed: Batch[] = []
    for await (const b of wal.replayBatches({ from: 0 })) replayed.push(b)
    assert.is(raw.length, replayed.length)
    for (let i = 0; i < raw.length; i++) assert.equal(plain(decodeBatch(raw[i].bytes)), plain(replayed[i]), `batch ${i}`)
    const big = raw[1].bytes
    // A flipped bit anywhere, a cut anywhere, bytes left over, two batches: never a batch.
    for (let at = 0; at < big.length; at += 97) {
      const bad = Buffer.from(big)
      bad[at] ^= 0x10
      assert.is(corruptCode(bad), 'WAL_CORRUPT', `flip at ${at}`)
    }
    for (const cut of [1, 31, 32, 100, big.length - 1]) assert.is(corruptCode(big.subarray(0, cut)), 'WAL_CORRUPT', `cut at ${cut}`)
    assert.is(corruptCode(Buffer.concat([raw[0].bytes, raw[2].bytes])), 'WAL_CORRUPT', 'two batches')
    assert.is(corruptCode(Buffer.concat([big, Buffer.alloc(8)])), 'WAL_CORRUPT', 'trailing zeros')
    assert.is(corruptCode(Buffer.alloc(0)), 'WAL_CORRUPT', 'empty')
    assert.is(corruptCode('not bytes' as unknown as Uint8Array), 'WAL_INVALID')
    await wal.close()
  })

  test(`[${backend}] a batch read across two chunks comes out whole`, async () => {
    // 1.5 MiB of batches in one segment: the reader's 1 MiB chunks cut at least one batch.
    const wal = await WriteAheadLog.open(tmpDir(), { backend, segmentSize: 4 * 1024 * 1024, preallocate: false })
    for (let i = 0; i < 150; i++) wal.appendBatchSync(Array.from({ length: 10 }, (_, j) => ({ type: 'put' as const, key: `k${i}.${j}`, value: 'w'.repeat(1000 + i) })))
    await wal.sync()
    const replayed: Batch[] = []
    for await (const b of wal.replayBatches({ from: 0 })) replayed.push(b)
    await wal.close()
    const ro = await WriteAheadLog.open(wal.dir, { backend, readOnly: true }) // no in-memory bytes: every chunk is read
    const it = ro[FOLLOW_RAW](1)
    for (let k = 0; k < replayed.length; k++) {
      const r = await it.next()
      assert.equal(plain(decodeBatch((r.value as RawBatch).bytes)), plain(replayed[k]), `batch ${k}`)
    }
    await it.return!()
    await ro.close()
  })
}

test.run()
