// A consumer of the published types, compiled with tsc --strict by test/encoding.test.ts
// (against lib/) and by the pack test (against the installed tarball). Each
// `@ts-expect-error` line must be an error: tsc fails if one compiles.
import { WriteAheadLog, type Batch, type Codec, type Entry, type Operation } from 'fastwal'

interface Event {
  id: number
  name: string
}

export async function defaults(dir: string): Promise<void> {
  const wal = await WriteAheadLog.open(dir)
  await wal.append({ type: 'put', key: 'k', value: new Uint8Array(1) }) // 'buffer' takes strings and Uint8Arrays
  await wal.append({ type: 'del', key: Buffer.from('k') })
  // @ts-expect-error a put needs a value
  await wal.append({ type: 'put', key: 'k' })
  // @ts-expect-error 'buffer' takes no numbers
  await wal.append({ type: 'put', key: 'k', value: 1 })
  for await (const e of wal.replay()) {
    const key: Buffer = e.key
    // @ts-expect-error before narrowing, value may be undefined
    const v0: Buffer = e.value
    if (e.type === 'put') {
      const v: Buffer = e.value // narrowed
      void v
    } else {
      const v: undefined = e.value
      void v
    }
    void key
    void v0
  }
  const spec: Entry = { lsn: 1, type: 'del', key: Buffer.alloc(0), value: undefined }
  void spec
}

export async function utf8AndJson(dir: string): Promise<void> {
  const wal = await WriteAheadLog.open(dir, { keyEncoding: 'utf8', valueEncoding: 'json' })
  await wal.append({ type: 'put', key: 'a', value: { any: ['json', 1] } })
  // @ts-expect-error 'utf8' keys are strings
  await wal.append({ type: 'put', key: Buffer.from('a'), value: 1 })
  for await (const e of wal.follow()) {
    const k: string = e.key
    void k
  }

  // 'json' is `any` until the handle is given the value type.
  const events: WriteAheadLog<string, Event> = await WriteAheadLog.open(dir, { keyEncoding: 'utf8', valueEncoding: 'json' })
  await events.appendBatch([
    { type: 'put', key: 'e1', value: { id: 1, name: 'one' } },
    { type: 'del', key: 'e0' },
  ])
  // @ts-expect-error id is a number
  await events.append({ type: 'put', key: 'e2', value: { id: 'x', name: 'two' } })
  const ops: Operation<string, Event>[] = [{ type: 'put', key: 'e3', value: { id: 3, name: 'three' } }]
  events.appendBatchSync(ops)
  for await (const b of events.replayBatches()) {
    const batch: Batch<string, Event> = b
    for (const e of batch.entries) {
      if (e.type === 'put') {
        const id: number = e.value.id
        void id
      } else {
        const none: undefined = e.value
        void none
      }
    }
  }
  for await (const b of events.followBatches()) void b.first
  // @ts-expect-error a Buffer-keyed log is not a string-keyed one
  const wrong: WriteAheadLog<string, Event> = await WriteAheadLog.open(dir)
  void wrong
  // @ts-expect-error not an encoding
  await WriteAheadLog.open(dir, { valueEncoding: 'utf16' })
}

export function codec(dir: string): void {
  const dates: Codec<Date> = {
    encode: (d) => d.toISOString(),
    decode: (b) => new Date(b.toString('utf8')),
  }
  const wal = WriteAheadLog.openSync(dir, { valueEncoding: dates })
  wal.appendSync({ type: 'put', key: 't', value: new Date() })
  // @ts-expect-error the codec takes Dates
  wal.appendSync({ type: 'put', key: 't', value: 'not a date' })
  for (const e of wal.replaySync()) {
    const k: Buffer = e.key
    if (e.type === 'put') {
      const t: Date = e.value
      void t
    }
    void k
  }
  // An inline codec is inferred too.
  const nums = WriteAheadLog.openSync(dir, { keyEncoding: { encode: (n: number) => String(n), decode: (b: Buffer) => Number(b.toString()) } })
  nums.appendSync({ type: 'del', key: 7 })
  for (const e of nums.replaySync()) {
    const n: number = e.key
    void n
  }
}
