// Key and value encodings (lib/encoding.ts): round trips through every write and read path
// on both backends, the on-disk bytes unchanged, codec failures refused whole, and the
// public types checked by tsc --strict on a consumer file.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import { join, resolve } from 'node:path'
import { WriteAheadLog, WalError, type Codec } from '../lib/index.js'
import { BACKENDS, tmpDir } from './helpers/util.js'
import { collect, openFails, rejectsWith } from './helpers/wal.js'

interface Event {
  id: number
  tags: string[]
  at: string | null
}

const dates: Codec<Date> = {
  encode: (d) => {
    if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new TypeError('not a valid Date')
    return d.toISOString()
  },
  decode: (b) => new Date(b.toString('utf8')),
}

/** Rejects with a WalError of `code` whose message matches `re`. */
async function rejectsMatching(p: Promise<unknown>, code: string, re: RegExp): Promise<WalError> {
  const err = await rejectsWith(p, code)
  assert.match(err.message, re)
  return err
}

for (const backend of BACKENDS) {
  test(`[${backend}] utf8 keys and json values round-trip through append, batches, sync appends, replay, replaySync, batches and follow`, async () => {
    const dir = tmpDir()
    const events: Event[] = [
      { id: 1, tags: ['a', 'ü'], at: null },
      { id: 2, tags: [], at: '2026-12-02T07:00:00.000Z' },
      { id: 3, tags: ['x'.repeat(5000)], at: null },
    ]
    const wal: WriteAheadLog<string, Event> = await WriteAheadLog.open(dir, { backend, keyEncoding: 'utf8', valueEncoding: 'json', segmentSize: 8192 })
    assert.is(await wal.append({ type: 'put', key: 'e/1', value: events[0] }), 1)
    assert.equal(await wal.appendBatch([{ type: 'put', key: 'e/2', value: events[1] }, { type: 'del', key: 'e/0' }]), { first: 2, last: 3 })
    assert.is(wal.appendSync({ type: 'put', key: 'e/3', value: events[2] }), 4)
    assert.equal(wal.appendBatchSync([{ type: 'del', key: 'e/1' }]), { first: 5, last: 5 })
    const want = [
      { lsn: 1, type: 'put', key: 'e/1', value: events[0] },
      { lsn: 2, type: 'put', key: 'e/2', value: events[1] },
      { lsn: 3, type: 'del', key: 'e/0', value: undefined },
      { lsn: 4, type: 'put', key: 'e/3', value: events[2] },
      { lsn: 5, type: 'del', key: 'e/1', value: undefined },
    ]
    assert.equal(await collect(wal.replay()), want)
    assert.equal([...wal.replaySync()], want)
    const batches = await collect(wal.replayBatches())
    assert.equal(batches.map((b) => [b.first, b.last, b.entries.map((e) => e.key)]), [[1, 1, ['e/1']], [2, 3, ['e/2', 'e/0']], [4, 4, ['e/3']], [5, 5, ['e/1']]])
    const follower = wal.follow({ from: 4 })
    assert.equal((await follower.next()).value, want[3])
    assert.equal((await follower.next()).value, want[4])
    const live = follower.next()
    await wal.append({ type: 'put', key: 'e/4', value: { id: 4, tags: ['live'], at: null } })
    assert.equal((await live).value, { lsn: 6, type: 'put', key: 'e/4', value: { id: 4, tags: ['live'], at: null } })
    await follower.return!()
    const fb = wal.followBatches({ from: 2 })
    assert.equal((await fb.next()).value?.entries.map((e) => e.value), [events[1], undefined])
    await fb.return!()
    await wal.close()

    // The bytes on disk are the encodings' output: 'buffer' sees UTF-8 keys and JSON text.
    const raw = await WriteAheadLog.open(dir, { backend, readOnly: true })
    const bytes = await collect(raw.replay())
    assert.equal(
      bytes.map((e) => [e.key.toString('utf8'), e.value?.toString('utf8')]),
      want.map((e) => [e.key, e.value === undefined ? undefined : JSON.stringify(e.value)]).concat([['e/4', JSON.stringify({ id: 4, tags: ['live'], at: null })]]),
    )
    await raw.close()
  })

  test(`[${backend}] a custom codec round-trips, its output buffers are copied, and a readOnly handle decodes too`, async () => {
    const dir = tmpDir()
    // A codec that encodes into one reused scratch buffer: a batch must still keep each value.
    const scratch = Buffer.alloc(8)
    const u64: Codec<bigint> = {
      encode: (n) => {
        scratch.writeBigUInt64BE(n)
        return scratch
      },
      decode: (b) => b.readBigUInt64BE(0),
    }
    const wal = await WriteAheadLog.open(dir, { backend, keyEncoding: u64, valueEncoding: dates })
    const t0 = new Date('2026-01-01T00:00:00Z')
    const t1 = new Date('2026-06-30T12:34:56.789Z')
    await wal.appendBatch([
      { type: 'put', key: 1n, value: t0 },
      { type: 'put', key: 2n ** 63n, value: t1 },
      { type: 'del', key: 3n },
    ])
    const reader = WriteAheadLog.openSync(dir, { backend, readOnly: true, keyEncoding: u64, valueEncoding: dates })
    for (const h of [wal, reader]) {
      const got = [...h.replaySync()]
      assert.equal(got.map((e) => e.key), [1n, 2n ** 63n, 3n])
      assert.equal(got.map((e) => (e.type === 'put' ? e.value.toISOString() : e.value)), [t0.toISOString(), t1.toISOString(), undefined])
    }
    await reader.close()
    await wal.close()
  })

  test(`[${backend}] an encode failure is WAL_INVALID naming the operation, and nothing of the call is written`, async () => {
    const dir = tmpDir()
    const wal = await WriteAheadLog.open(dir, { backend, keyEncoding: 'utf8', valueEncoding: dates })
    await wal.append({ type: 'put', key: 'ok', value: new Date(0) })
    await rejectsMatching(wal.append({ type: 'put', key: 'bad', value: new Date(NaN) }), 'WAL_INVALID', /append\(op\): value: the valueEncoding codec could not encode it: not a valid Date\. Nothing was written/)
    const err = await rejectsMatching(
      wal.appendBatch([
        { type: 'put', key: 'b1', value: new Date(1) },
        { type: 'put', key: 'b2', value: 'nope' as unknown as Date },
      ]),
      'WAL_INVALID',
      /appendBatch: operation 1: value/,
    )
    assert.instance(err.cause, TypeError)
    // 'utf8' keys must be strings; a Buffer key is refused, not silently stored.
    assert.throws(() => wal.appendSync({ type: 'del', key: Buffer.from('k') as unknown as string }), (e: WalError) => e.code === 'WAL_INVALID' && /'utf8' could not encode it: expected a string; got a Uint8Array/.test(e.message))
    assert.is(wal.lastLsn, 1)
    await wal.close()
    const again = await WriteAheadLog.open(dir, { backend })
    assert.is(again.lastLsn, 1)
    assert.is((await collect(again.replay())).length, 1)
    await again.close()

    // json: values with no JSON form, and cycles.
    const j = await WriteAheadLog.open(tmpDir(), { backend, valueEncoding: 'json' })
    await rejectsMatching(j.append({ type: 'put', key: 'k', value: undefined }), 'WAL_INVALID', /'json' could not encode it: undefined has no JSON form/)
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    await rejectsMatching(j.append({ type: 'put', key: 'k', value: cyclic }), 'WAL_INVALID', /'json' could not encode it: .*circular/i)
    await rejectsMatching(j.append({ type: 'put', key: 'k', value: 1n }), 'WAL_INVALID', /BigInt/)
    assert.is(j.lastLsn, 0)
    await j.close()

    // A codec that returns something other than bytes.
    const bad = await WriteAheadLog.open(tmpDir(), { backend, valueEncoding: { encode: (n: number) => n as unknown as string, decode: (b: Buffer) => b.length } })
    await rejectsMatching(bad.append({ type: 'put', key: 'k', value: 5 }), 'WAL_INVALID', /returned number from encode; it must return a string or a Uint8Array/)
    assert.is(bad.lastLsn, 0)
    await bad.close()
  })

  test(`[${backend}] a value the encoding cannot decode rejects the read with WAL_INVALID naming the LSN, after the entries before it`, async () => {
    const dir = tmpDir()
    const w = await WriteAheadLog.open(dir, { backend })
    await w.append({ type: 'put', key: 'a', value: '{"ok":true}' })
    await w.append({ type: 'put', key: 'b', value: 'not json' })
    await w.close()
    const wal = await WriteAheadLog.open(dir, { backend, valueEncoding: 'json' })
    const it = wal.replay()
    assert.equal((await it.next()).value, { lsn: 1, type: 'put', key: Buffer.from('a'), value: { ok: true } })
    await rejectsMatching(it.next(), 'WAL_INVALID', /The value of LSN 2 could not be decoded by 'json'.*open it with the encoding that wrote it/)
    assert.equal(await it.next(), { value: undefined, done: true })
    const sync = wal.replaySync()
    assert.is(sync.next().value?.lsn, 1)
    assert.throws(() => sync.next(), (e: WalError) => e.code === 'WAL_INVALID' && /LSN 2/.test(e.message))
    await wal.close()
  })
}

test('bad encoding options are WAL_INVALID at open and name the option', () => {
  for (const [opt, v] of [
    ['keyEncoding', 'utf16'],
    ['valueEncoding', { encode: () => '' }],
    ['valueEncoding', null],
    ['keyEncoding', 42],
  ] as const) {
    const err = openFails(() => WriteAheadLog.openSync(tmpDir(), { [opt]: v } as object), 'WAL_INVALID')
    assert.match(err.message, new RegExp(`Option '${opt}' must be 'buffer', 'utf8', 'json' or an object with encode\\(value\\) and decode\\(bytes\\) functions`))
  }
})

test('tsc --strict on a consumer file: the generics type append, replay and follow, and checking type narrows value', () => {
  const root = resolve(__dirname, '..')
  const work = tmpDir('tsc')
  fs.mkdirSync(work, { recursive: true })
  const cfg = join(work, 'tsconfig.json')
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        lib: ['ES2022', 'ESNext.Disposable'],
        module: 'commonjs',
        moduleResolution: 'node10',
        strict: true,
        esModuleInterop: true,
        noEmit: true,
        skipLibCheck: true,
        types: ['node'],
        typeRoots: [join(root, 'node_modules/@types')],
        baseUrl: root,
        paths: { fastwal: ['lib/index.ts'] },
      },
      files: [join(root, 'test/types/encodings.consumer.ts')],
    }),
  )
  try {
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', cfg], { encoding: 'utf8' })
  } catch (err) {
    throw new Error(`tsc failed:\n${(err as { stdout?: string }).stdout}`)
  }
})

test.run()
