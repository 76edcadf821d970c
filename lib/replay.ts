// Replay and follow: the iterators over a LogReader. Entries and batches come out of the record
// cursor, which yields a batch only when its COMMIT matches its BEGIN. Memory is one
// chunk plus the largest open batch. The sync and async iterators share the reader and
// differ only in the driver (calling thread or thread pool).
import { decodeEntry, type Encodings } from './encoding.js'
import { LogReader, step, stepBlocking, type LogSource } from './log-reader.js'
import type { Batch as RecordBatch, CursorOutput, Entry as RecordEntry, RawBatch } from './record-cursor.js'

/**
 * One committed PUT or DEL, as replay and follow yield it. `K` and `V` are the handle's
 * key and value types (Buffer unless opened with keyEncoding/valueEncoding). Checking
 * `type` narrows `value`: `V` for a put, `undefined` for a del.
 *
 * @example
 * ```ts
 * for await (const e of wal.replay()) {
 *   if (e.type === 'put') state.set(e.key.toString(), e.value)
 *   else state.delete(e.key.toString())
 * }
 * ```
 */
export type Entry<K = Buffer, V = Buffer> =
  | {
      /** Unique, strictly increasing, never reused once acknowledged. */
      lsn: number
      /** A put: `value` is the stored value. */
      type: 'put'
      /** The key. */
      key: K
      /** The value. */
      value: V
    }
  | {
      /** Unique, strictly increasing, never reused once acknowledged. */
      lsn: number
      /** A delete: there is no value. */
      type: 'del'
      /** The key. */
      key: K
      /** Always undefined for a delete. */
      value: undefined
    }

/**
 * An atomic batch as one unit (a standalone append is a batch of one): `first` to `last`
 * are its LSNs, `entries` its operations in order.
 *
 * @example
 * ```ts
 * for await (const b of wal.replayBatches()) applyAtomically(b.entries)
 * ```
 */
export interface Batch<K = Buffer, V = Buffer> {
  /** LSN of its first entry. */
  first: number
  /** LSN of its last entry. */
  last: number
  /** Its operations, in order. */
  entries: Entry<K, V>[]
}

/** Runs the handle's encodings over an entry or a batch's entries, as it is handed out. */
function decodeItem(enc: Encodings, item: RecordEntry | RecordBatch): void {
  if ('entries' in item) for (const e of item.entries) decodeEntry(enc, e)
  else decodeEntry(enc, item)
}

function replaySync<T extends RecordEntry | RecordBatch>(src: LogSource, from: number, asBatches: boolean, enc?: Encodings): Generator<T> {
  const out: CursorOutput = { from, asBatches, items: [] }
  const reader = new LogReader(src, from, out)
  // Registered now, not at the first next(): a checkpoint made before it keeps what it needs.
  reader.advanced = src.track({ position: () => reader.position(), abort: (err) => reader.close(err) })
  return readAllSync<T>(src, reader, out, enc)
}

function* readAllSync<T extends RecordEntry | RecordBatch>(src: LogSource, reader: LogReader, out: CursorOutput, enc: Encodings | undefined): Generator<T> {
  try {
    for (;;) {
      out.items.length = 0
      const r = stepBlocking(reader, src.backend, src.dir)
      const items = out.items
      for (let i = 0; i < items.length; i++) {
        reader.check()
        if (enc) decodeItem(enc, items[i])
        yield items[i] as T
      }
      if (r !== 'more') return // 'wait' is only for followers
    }
  } finally {
    reader.close()
  }
}

/**
 * The async iterator, written by hand: items of the chunk in hand are returned as
 * already-resolved promises, so a `for await` pays one microtask per entry and one trip
 * to the thread pool per chunk (read + CRC check + index, in the backend).
 */
class ReplayIterator<T extends RecordEntry | RecordBatch | RawBatch> implements AsyncIterableIterator<T> {
  private items: (RecordEntry | RecordBatch)[] = []
  private i = 0
  private readonly out: CursorOutput
  private readonly reader: LogReader
  private flushed = false
  private finished = false
  private failure: unknown
  private pending: Promise<IteratorResult<T>> | undefined
  private readonly onAbort: (() => void) | undefined
  private wake: (() => void) | undefined // a follower waiting for the log to change
  private exhausted = false // the reader is done; the items in hand are the last

  constructor(
    private readonly src: LogSource,
    from: number,
    asBatches: boolean,
    private readonly before?: () => Promise<void>,
    private readonly signal?: AbortSignal,
    private readonly follow = false,
    raw = false,
    private readonly enc?: Encodings,
  ) {
    this.out = { from, asBatches, items: [], raw }
    this.reader = new LogReader(src, from, this.out, follow)
    // Registered now, so a checkpoint made before the first next() keeps what it needs.
    // A follower ends (done) when the handle closes; a replay rejects with WAL_CLOSED.
    this.reader.advanced = src.track({ position: () => this.reader.position(), abort: (err) => (this.follow ? this.end() : this.stop(err)), follows: follow })
    if (signal) {
      this.onAbort = () => this.stop(signal.reason)
      if (signal.aborted) this.onAbort()
      else signal.addEventListener('abort', this.onAbort, { once: true })
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (!this.pending) {
      if (this.failure !== undefined) return Promise.reject(this.failure)
      if (this.i < this.items.length) {
        try {
          return Promise.resolve(this.take())
        } catch (err) {
          this.finish()
          return Promise.reject(err)
        }
      }
      if (this.finished) return Promise.resolve({ value: undefined, done: true })
    }
    // Calls made while a chunk is being read queue behind it, so results stay in order.
    const p: Promise<IteratorResult<T>> = (this.pending ?? Promise.resolve()).then(() => this.fill())
    this.pending = p
    const clear = () => {
      if (this.pending === p) this.pending = undefined
    }
    p.then(clear, clear)
    return p
  }

  private async fill(): Promise<IteratorResult<T>> {
    if (this.failure !== undefined) throw this.failure
    if (this.finished) return { value: undefined, done: true }
    try {
      if (this.i < this.items.length) return this.take()
      if (!this.flushed) {
        this.flushed = true
        if (this.before) await this.before()
      }
      this.items = this.out.items = []
      this.i = 0
      while (this.items.length === 0) {
        if (this.failure !== undefined) throw this.failure
        if (this.finished) return { value: undefined, done: true }
        if (this.exhausted) {
          this.finish()
          return { value: undefined, done: true }
        }
        const changes = this.src.changes()
        const r = await step(this.reader, this.src.backend, this.src.dir)
        if (this.failure !== undefined) throw this.failure // aborted or closed meanwhile
        if (this.finished) return { value: undefined, done: true } // return() was called meanwhile
        if (r === 'done') {
          if (this.items.length > 0) {
            this.exhausted = true // the last step produced these: yield them, then end
            break
          }
          this.finish()
          return { value: undefined, done: true }
        }
        // A change while the step ran (it woke nobody: no one was subscribed yet) means look again.
        if (r === 'wait' && this.items.length === 0 && this.src.changes() === changes) {
          // Woken by the writer (a sync), a change in the directory, abort or close.
          await new Promise<void>((resolve) => {
            const unsubscribe = this.src.onChange(() => this.wake?.())
            this.wake = () => {
              this.wake = undefined
              unsubscribe()
              resolve()
            }
          })
        }
      }
      return this.take()
    } catch (err) {
      this.finish()
      throw err
    }
  }

  /** The next item in hand, decoded as it is handed out: a decode failure comes after the entries before it. */
  private take(): IteratorResult<T> {
    const item = this.items[this.i++]
    if (this.enc) decodeItem(this.enc, item)
    return { value: item as T, done: false }
  }

  private finish(): void {
    this.finished = true
    this.items = []
    if (this.onAbort) this.signal!.removeEventListener('abort', this.onAbort)
    this.reader.close()
  }

  /** Aborted or the handle closed: later calls reject with `err`; files close once no read is on the pool. */
  private stop(err: unknown): void {
    if (this.failure === undefined) this.failure = err
    this.items = []
    this.i = 0
    this.wake?.()
    if (this.pending) this.pending.then(() => this.finish(), () => this.finish())
    else this.finish()
  }

  /** The handle closed under a follower: it ends, done. */
  private end(): void {
    this.finished = true
    this.wake?.()
    if (this.pending) this.pending.then(() => this.finish(), () => this.finish())
    else this.finish()
  }

  /** Ends iteration; a chunk read still on the thread pool finishes before the fd closes. */
  return(): Promise<IteratorResult<T>> {
    this.finished = true
    this.wake?.() // a follower waiting for the log to change ends now
    const done = (): IteratorResult<T> => {
      this.finish()
      return { value: undefined, done: true }
    }
    return this.pending ? this.pending.then(done, done) : Promise.resolve(done())
  }

  [Symbol.asyncIterator](): this {
    return this
  }
}

export function replayEntriesSync(src: LogSource, from: number, enc?: Encodings): Generator<RecordEntry> {
  return replaySync<RecordEntry>(src, from, false, enc)
}

export function replayBatchesAsync(src: LogSource, from: number, before?: () => Promise<void>, signal?: AbortSignal, enc?: Encodings): AsyncIterableIterator<RecordBatch> {
  return new ReplayIterator<RecordBatch>(src, from, true, before, signal, false, false, enc)
}

export function replayEntriesAsync(src: LogSource, from: number, before?: () => Promise<void>, signal?: AbortSignal, enc?: Encodings): AsyncIterableIterator<RecordEntry> {
  return new ReplayIterator<RecordEntry>(src, from, false, before, signal, false, false, enc)
}

/** The key of WriteAheadLog's internal follow of raw batches (each with its records' bytes), for shippers. */
export const FOLLOW_RAW = Symbol('fastwal.followRaw')

export function followRawBatches(src: LogSource, from: number, before?: () => Promise<void>, signal?: AbortSignal): AsyncIterableIterator<RawBatch> {
  return new ReplayIterator<RawBatch>(src, from, true, before, signal, true, true)
}

/** What replay yields, then each later committed entry once it is durable; ends when the handle closes. */
export function followEntries(src: LogSource, from: number, before?: () => Promise<void>, signal?: AbortSignal, enc?: Encodings): AsyncIterableIterator<RecordEntry> {
  return new ReplayIterator<RecordEntry>(src, from, false, before, signal, true, false, enc)
}

export function followBatches(src: LogSource, from: number, before?: () => Promise<void>, signal?: AbortSignal, enc?: Encodings): AsyncIterableIterator<RecordBatch> {
  return new ReplayIterator<RecordBatch>(src, from, true, before, signal, true, false, enc)
}
