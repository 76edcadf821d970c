// The writer's segments (lib/writer-segments.ts): once the current segment is half full the
// next one's file is zero-filled ahead of time (a spare) and renamed into place at
// rotation, and a writer closed meanwhile never touches the next writer's files. Segment
// names strictly increase, so creating a segment never replaces one, and checkpoint takes
// out of the writer's list only segments wholly at or below its LSN, never the live one.
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../lib/index.js'
import { BACKENDS, backendImpl, segmentFiles, tmpDir } from './helpers/util.js'
import { collect } from './helpers/wal.js'
import { PREALLOCATE_STEP } from '../lib/segments.js'

for (const backend of BACKENDS) {
  const t = (name: string, fn: () => Promise<void>) => test(`[${backend}] ${name}`, fn)
  const opts = { backend, segmentSize: 4096, preallocate: false } as const

  t('preallocated rotation: zero-filled spares become segments; old ones end at their last record', async () => {
    const dir = tmpDir()
    const segmentSize = 64 * 1024
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize })
    const value = 'p'.repeat(1000)
    for (let i = 0; i < 300; i++) {
      await wal.append({ type: 'put', key: `k${i}`, value })
      if (i % 40 === 0) await new Promise((r) => setImmediate(r)) // let the spare's zero fill finish
    }
    await wal.close()
    const files = fs.readdirSync(dir).sort()
    assert.not.ok(files.some((f) => f.startsWith('prealloc')), 'spare removed at close')
    const segs = segmentFiles(dir)
    assert.ok(segs.length >= 4)
    for (const sname of segs.slice(0, -1)) {
      const bytes = fs.readFileSync(join(dir, sname))
      const scan = backendImpl(backend).scan(bytes, 32, bytes.length)
      assert.ok(bytes.length < segmentSize, `${sname} truncated`)
      assert.is(scan.status, 0, `${sname} is whole records to its end`)
      assert.is(scan.stop, bytes.length)
    }
    assert.is(fs.statSync(join(dir, segs[segs.length - 1])).size, segmentSize)
    const r = await WriteAheadLog.open(dir, { backend, segmentSize, recovery: 'strict' })
    assert.is((await collect(r.replay({ from: 0 }))).length, 300)
    await r.close()
  })

  t('a writer closed while its spare is being zero-filled never disturbs the next writer', async () => {
    const dir = tmpDir()
    const segmentSize = 32 * 1024
    const value = 'q'.repeat(600)
    for (let round = 0; round < 6; round++) {
      const a = await WriteAheadLog.open(dir, { backend, segmentSize })
      // Past half the segment: the next segment's zero fill starts on the thread pool.
      for (let i = 0; i < 30; i++) a.appendSync({ type: 'put', key: `a${round}-${i}`, value })
      await a.close() // while that fill may still be running
      const b = await WriteAheadLog.open(dir, { backend, segmentSize })
      for (let i = 0; i < 120; i++) await b.append({ type: 'put', key: `b${round}-${i}`, value }) // rotates
      await b.close()
    }
    const r = WriteAheadLog.openSync(dir, { backend, segmentSize, recovery: 'strict' })
    assert.is([...r.replaySync({ from: 0 })].length, 6 * 150)
    r.closeSync()
  })

  // The ordinary consumer loop, `for await (e of replay()) await checkpoint(e.lsn)`: a
  // segment that holds only CHECKPOINT records is followed by one named one higher, never
  // by one of the same name, so no segment is replaced and no later append is lost.
  t('checkpointing a backlog entry by entry keeps the live segment and every later append', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { ...opts, sync: 'always' })
    for (let i = 1; i <= 300; i++) wal.appendSync({ type: 'put', key: `k${i}`, value: 'v' })
    let n = 0
    for await (const e of wal.replay()) {
      await wal.checkpoint(e.lsn)
      n++
    }
    assert.is(n, 300)
    const names = segmentFiles(dir)
    assert.is(new Set(names).size, names.length)
    for (let i = 1; i <= 20; i++) assert.is(await wal.append({ type: 'put', key: `after${i}`, value: 'w' }), 300 + i)
    await wal.close()
    const re = await WriteAheadLog.open(dir, opts)
    assert.is(re.lastLsn, 320)
    assert.is(re.checkpointLsn, 300)
    const keys = (await collect(re.replay())).map((e) => e.key.toString())
    assert.equal(keys, Array.from({ length: 20 }, (_, i) => `after${i + 1}`))
    assert.is(await re.append({ type: 'put', key: 'x', value: 'y' }), 321)
    await re.close()
  })

  t('a new log takes one preallocation step on disk (4 MiB), not its 64 MiB segment', async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend })
    for (let i = 0; i < 4; i++) await wal.append({ type: 'put', key: `k${i}`, value: `v${i}` })
    const seg = join(dir, segmentFiles(dir)[0])
    assert.is(fs.statSync(seg).size, PREALLOCATE_STEP)
    assert.ok(fs.statSync(seg).blocks * 512 <= PREALLOCATE_STEP + 64 * 1024, `${fs.statSync(seg).blocks * 512} bytes allocated`)
    await wal.close()
    // Reopening does not grow it either.
    const again = WriteAheadLog.openSync(dir, { backend })
    again.closeSync()
    assert.is(fs.statSync(seg).size, PREALLOCATE_STEP)
  })

  t('zeros stay ahead of the records a step at a time, and blocking appends during an extension are never overwritten by its zeros', async () => {
    const dir = tmpDir()
    const segmentSize = 16 * 1024 * 1024
    const wal = await WriteAheadLog.open(dir, { backend, segmentSize })
    const seg = () => join(dir, segmentFiles(dir)[0])
    const valueOf = (i: number) => Buffer.alloc(256 * 1024, (i % 251) + 1) // no zero bytes: a zeroed record shows
    const sizes = new Set<number>()
    let n = 0
    // Async appends, then a 3 MiB blocking batch: staging it starts an extension (less than
    // half a step of zeros is left), and its write runs past where those zeros begin while
    // they are being appended on the pool.
    while (n < 45) {
      for (let k = 0; k < 3; k++) await wal.append({ type: 'put', key: `k${n}`, value: valueOf(n++) })
      const batch = []
      for (let k = 0; k < 12; k++) batch.push({ type: 'put' as const, key: `k${n}`, value: valueOf(n++) })
      wal.appendBatchSync(batch)
      sizes.add(fs.statSync(seg()).size)
    }
    await wal.close()
    const size = fs.statSync(seg()).size
    assert.ok(size <= segmentSize, `file ${size} bytes, segment ${segmentSize}`)
    assert.ok(sizes.size >= 3, `grew in steps: ${[...sizes].join(', ')}`)
    const r = await WriteAheadLog.open(dir, { backend, segmentSize, recovery: 'strict', readOnly: true })
    const got = await collect(r.replay({ from: 0 }))
    await r.close()
    assert.is(got.length, n)
    for (const e of got) assert.ok(e.value!.equals(valueOf(e.lsn - 1)), `LSN ${e.lsn} intact`)
    // Whatever follows the last record is zeros.
    const bytes = fs.readFileSync(seg())
    let end = bytes.length
    while (end > 0 && bytes[end - 1] === 0) end--
    assert.ok(end > n * 256 * 1024, 'records present')
  })

  t('rotation waits for a running extension before cutting the finished segment; blocking rotations cut it again after', async () => {
    for (const blocking of [false, true]) {
      const dir = tmpDir()
      const segmentSize = 6 * 1024 * 1024
      const wal = await WriteAheadLog.open(dir, { backend, segmentSize })
      const value = Buffer.alloc(200 * 1024, 9)
      for (let i = 0; i < 70; i++) {
        if (blocking) wal.appendSync({ type: 'put', key: `k${i}`, value })
        else await wal.append({ type: 'put', key: `k${i}`, value })
      }
      await wal.close()
      const segs = segmentFiles(dir)
      assert.ok(segs.length >= 3, `${segs.length} segments`)
      for (const sname of segs.slice(0, -1)) {
        const bytes = fs.readFileSync(join(dir, sname))
        const scan = backendImpl(backend).scan(bytes, 32, bytes.length)
        assert.is(scan.status, 0, `${sname} is whole records`)
        assert.is(scan.stop, bytes.length, `${sname} (blocking: ${blocking}) ends at its last record`)
      }
      const r = WriteAheadLog.openSync(dir, { backend, segmentSize, recovery: 'strict' })
      assert.is([...r.replaySync({ from: 0 })].length, 70)
      r.closeSync()
    }
  })


  t('a zero extension ended by closeSync or by a rotation leaves at most zeros behind, and a strict open after a power cut accepts them', async () => {
    const v = Buffer.alloc(1024 * 1024, 7)
    const trailingZeros = (file: string) => {
      const b = fs.readFileSync(file)
      let end = b.length
      while (end > 0 && b[end - 1] === 0) end--
      return b.length - end
    }
    // Blocking appends start an extension, then rotate while it runs; closeSync, and the
    // process exits at once (nothing it still had queued gets a later chance to tidy up).
    const dir = tmpDir()
    const child = join(tmpDir('child'), 'writer.ts')
    fs.mkdirSync(join(child, '..'), { recursive: true })
    fs.writeFileSync(
      child,
      `const { WriteAheadLog } = require(${JSON.stringify(join(__dirname, '..', 'lib', 'index.ts'))})
const a = WriteAheadLog.openSync(${JSON.stringify(dir)}, { backend: '${backend}', segmentSize: 8 * 1024 * 1024 })
const v = Buffer.alloc(1024 * 1024, 7)
for (let i = 0; i < 9; i++) a.appendSync({ type: 'put', key: 'a' + i, value: v })
a.closeSync()
setTimeout(() => process.exit(0), 10)
`,
    )
    execFileSync(process.execPath, ['-r', 'tsx/cjs', child], { cwd: join(__dirname, '..') })
    const segs = segmentFiles(dir)
    for (const sname of segs.slice(0, -1)) assert.ok(trailingZeros(join(dir, sname)) <= 512 * 1024, `${sname}: at most one chunk of zeros after its last record`)
    // A power cut loses the last segment's unsynced records (its header was synced at creation).
    fs.truncateSync(join(dir, segs[segs.length - 1]), 32)
    const r = WriteAheadLog.openSync(dir, { backend, recovery: 'strict', readOnly: false })
    const got = [...r.replaySync({ from: 0 })]
    r.closeSync()
    assert.ok(got.length >= 7, `${got.length} entries`)
    for (const e of got) assert.ok(e.value!.equals(v))
  })

}

test.run()
