// The public facade: argument checking and the wiring of open, the writer, the readers
// and checkpoint deletion. Backend-independent: both backends run exactly this code.
import * as fs from 'node:fs'
import { inspect } from 'node:util'
import { join } from 'node:path'
import type { Backend } from './backend.js'
import { WalError, ioError } from './errors.js'
import { RECORD_HEADER_SIZE, MAX_PAYLOAD, MAX_LSN } from './format.js'
import { Cursor, checkCursorName, openCursor, readCursors, readCursorsBlocking, type CursorHost } from './cursors.js'
import type { DurablePublisher } from './durable-file.js'
import type { DirLock } from './lock.js'
import { LogWatcher } from './log-watcher.js'
import type { LogSource, TrackedReader } from './log-reader.js'
import type { LogWriter } from './log-writer.js'
import { openLog, openLogBlocking, type OpenedLog } from './open.js'
import { normalizeBatch, normalizeOp, type Operation, type Options, type ResolvedOptions } from './options.js'
import type { ReadOnlyView } from './read-only-view.js'
import type { RawBatch } from './record-cursor.js'
import { FOLLOW_RAW, followBatches, followEntries, followRawBatches, replayBatchesAsync, replayEntriesAsync, replayEntriesSync, type Batch, type Entry } from './replay.js'
import type { Decoded, Encoding } from './encoding.js'
import { channels } from './stats.js'
import { fsCall, readPrevLsn, syncDir, syncDirAsync, type SegmentRef } from './segments.js'

/** Open handles under sync 'none'/'interval' hand their staged bytes to the OS at exit: one listener for all. */
const atExit = new Set<() => void>()
function flushAtExit(fn: () => void, on: boolean): void {
  if (!on) {
    atExit.delete(fn)
    return
  }
  if (atExit.size === 0 && !process.listeners('exit').includes(runAtExit)) process.on('exit', runAtExit)
  atExit.add(fn)
}
function runAtExit(): void {
  for (const fn of atExit) fn()
}

/** LSNs are exact JavaScript integers: a call that would pass 2^53 - 1 is refused whole. */
function checkLsnRoom(w: LogWriter, n: number, what: string): void {
  if (w.lastLsn + n > MAX_LSN)
    throw new WalError('WAL_INVALID', `${what}: the log has used LSNs up to ${w.lastLsn}; ${n} more would pass 2^53 - 1, the largest LSN. Start a new log.`)
}

/**
 * What {@link WriteAheadLog.stats} returns: plain numbers, cheap to call per request.
 *
 * @example
 * ```ts
 * const s = wal.stats()
 * metrics.gauge('wal.lag', s.lastLsn - s.durableLsn)
 * metrics.gauge('wal.sync_p99_us', s.syncLatencyUs.p99)
 * ```
 */
export interface Stats {
  /** Last appended LSN (0 when empty). */
  lastLsn: number
  /** Every LSN up to this one is durable. */
  durableLsn: number
  /** Lowest LSN replay can still yield. */
  firstLsn: number
  /** Latest checkpoint (0 if none). */
  checkpointLsn: number
  /** Segment files in the log (those checkpoint freed but a reader still holds included). */
  segments: number
  /** Bytes of all segment files, the zero-filled region ahead of the records included. */
  bytesOnDisk: number
  /** Standalone appends and batches staged by this handle. */
  appends: number
  /** Batches (appendBatch calls) staged by this handle. */
  batches: number
  /** Bytes handed to the OS by this handle's writes. */
  bytesWritten: number
  /** Completed data syncs of this handle. */
  syncs: number
  /** Latency of this handle's write + sync calls, in microseconds (a histogram's p50, p99, max). */
  syncLatencyUs: LatencySummary
  /** Appends and batches per sync (group commit), mean and largest. */
  groupCommit: GroupCommit
  /** Segments created by this handle's writer after open. */
  rotations: number
  /** Bytes zero-filled ahead of the records by this handle (a step at a time, and the next segment's first step). */
  bytesPreallocated: number
  /** Unfinished replay and follow iterators of this handle. */
  readers: number
  /** Every cursor on the directory (from any process): how far each is behind, and what it keeps on disk. */
  cursors: CursorLag[]
}

/**
 * Percentiles of a latency histogram, in microseconds.
 *
 * @example
 * ```ts
 * const { p50, p99 } = wal.stats().syncLatencyUs
 * ```
 */
export interface LatencySummary {
  /** Median. */
  p50: number
  /** 99th percentile. */
  p99: number
  /** Largest seen. */
  max: number
}

/**
 * Appends and batches per sync, in {@link Stats.groupCommit}.
 *
 * @example
 * ```ts
 * const perSync = wal.stats().groupCommit.mean
 * ```
 */
export interface GroupCommit {
  /** Mean per sync. */
  mean: number
  /** Most in one sync. */
  max: number
}

/**
 * One cursor in {@link Stats.cursors}.
 *
 * @example
 * ```ts
 * for (const c of wal.stats().cursors) console.log(c.name, c.lagEntries, c.lagBytes)
 * ```
 */
export interface CursorLag {
  /** The cursor's name. */
  name: string
  /** The last LSN it confirmed. */
  lsn: number
  /** Entries appended after it. */
  lagEntries: number
  /** Bytes of segments kept on disk for it. */
  lagBytes: number
}

/**
 * What open did to recover the log, in {@link WriteAheadLog.recovery}.
 *
 * @example
 * ```ts
 * if (wal.recovery.droppedEntries > 0) log.warn('unacknowledged tail dropped', wal.recovery)
 * ```
 */
export interface RecoveryReport {
  /** The recovery mode open ran with. */
  mode: string
  /** Bytes cut from a torn tail (0 when the log was clean). */
  truncatedBytes: number
  /** Entries dropped with it (they were never acknowledged). */
  droppedEntries: number
  /** Incomplete batches dropped with it. */
  droppedBatches: number
}

/**
 * The LSNs a batch took: `first` to `last`, inclusive.
 *
 * @example
 * ```ts
 * const { first, last }: LsnRange = await wal.appendBatch(ops)
 * ```
 */
export interface LsnRange {
  /** LSN of the batch's first operation. */
  first: number
  /** LSN of its last operation. */
  last: number
}

/**
 * Options of replay, replayBatches, follow and followBatches.
 *
 * @example
 * ```ts
 * const ac = new AbortController()
 * for await (const e of wal.follow({ from: 0, signal: ac.signal })) handle(e)
 * ```
 */
export interface ReadOptions {
  /** First LSN to yield; default checkpointLsn + 1; 0 for everything retained. */
  from?: number
  /** Aborting it makes the pending and every later next() reject with its reason. */
  signal?: AbortSignal
}

/**
 * A write-ahead log in one directory. Appends are acknowledged once durable (under the
 * default `sync: 'always'`), batches are atomic, and replay yields only committed
 * entries. `K` and `V` are the key and value types of the handle's encodings.
 *
 * @example
 * ```ts
 * import { WriteAheadLog } from 'fastwal'
 *
 * const wal = await WriteAheadLog.open('./data/wal')
 * for await (const e of wal.replay()) apply(e)          // after a restart
 * const lsn = await wal.append({ type: 'put', key: 'k', value: 'v' })
 * await wal.checkpoint(lsn)                               // applied elsewhere
 * await wal.close()
 * ```
 */
export class WriteAheadLog<K = Buffer, V = Buffer> {
  /** The log's directory, absolute. */
  readonly dir: string
  /** Which backend runs the hot path: the C++ addon or the pure-TypeScript one. */
  readonly backend: 'native' | 'js'
  /** What open did to recover the log's tail. */
  readonly recovery: RecoveryReport

  private readonly impl: Backend
  private readonly opts: ResolvedOptions
  private readonly writer: LogWriter | undefined
  private readonly lock: DirLock | undefined
  /** The readOnly handle's view; undefined for a writer. */
  private readonly view: ReadOnlyView | undefined
  private cpLsn: number
  private closing: Promise<void> | undefined
  private closedFlag = false
  /** Unfinished iterators of this handle, with the oldest segment each still needs. */
  private readonly readers = new Set<TrackedReader>()
  /** Segments a checkpoint freed that a reader still needs: deleted once it passes them. */
  private readonly doomed: SegmentRef[] = []
  private reaping: Promise<void> = Promise.resolve()
  /** Taken out of view by reap, deletion under way (oldest first). */
  private readonly deleting: SegmentRef[] = []
  /** close() is deleting what readers held back: reap goes on after closedFlag. */
  private finalReap = false
  private readonly prevLsnOf = new Map<string, number>()
  /** Followers waiting for the log to change. */
  private readonly changeWaiters = new Set<() => void>()
  private changeCount = 0
  private readonly publisher: DurablePublisher | undefined
  /** readOnly: watches the directory while followers wait; `listingStale` asks for a new listing. */
  private watcher: LogWatcher | undefined
  private listingStale = false
  private readonly sizeOf = new Map<string, number>() // sizes of finished segments, for stats()
  private cursorCache: { at: number; cursors: Map<string, number> } | undefined
  private readonly cursorHost: CursorHost
  /** Stable id of this log directory (in its LOGID file); a recreated directory gets a new one. */
  readonly logId: string

  private constructor(o: OpenedLog) {
    this.dir = o.dir
    this.impl = o.backend
    this.backend = o.backend.kind
    this.opts = o.opts
    this.writer = o.writer
    this.lock = o.lock
    this.view = o.view
    this.publisher = o.publisher
    this.logId = o.logId
    this.cpLsn = o.checkpointLsn
    this.recovery = Object.freeze({ ...o.report })
    if (this.writer && this.opts.sync !== 'always') flushAtExit(this.onExit, true)
    const publisher = o.publisher
    if (this.writer) {
      this.writer.keepRecent = () => {
        for (const r of this.readers) if (r.follows) return true
        return false
      }
    }
    if (this.writer && publisher) {
      this.writer.publisher = publisher
      this.writer.onDurable = (lsn, blocking) => {
        if (blocking) publisher.publishBlocking(lsn)
        else publisher.publish(lsn)
        this.wakeFollowers()
      }
    }
    this.cursorHost = {
      dir: this.dir,
      backend: this.impl,
      lastLsn: () => {
        this.view?.refresh(false)
        return this.lastLsn
      },
      check: (what) => {
        if (this.closedFlag) throw new WalError('WAL_CLOSED', `${what}: the WAL in ${this.dir} is closed. Open it again to use cursors.`)
      },
    }
  }

  /**
   * Opens (creating if needed) the log in `dir` (a path or a file: URL), taking its lock
   * and recovering its tail. The encodings in `options` set the handle's types.
   *
   * @example
   * ```ts
   * const wal = await WriteAheadLog.open('./data/wal', { sync: 'always' })
   * const events = await WriteAheadLog.open(new URL('./events/', import.meta.url), { keyEncoding: 'utf8', valueEncoding: 'json' })
   * ```
   */
  static async open<KE extends Encoding = 'buffer', VE extends Encoding = 'buffer'>(dir: string | URL, options?: Options<KE, VE>): Promise<WriteAheadLog<Decoded<KE>, Decoded<VE>>> {
    return new WriteAheadLog(await openLog(dir, options))
  }

  /**
   * {@link WriteAheadLog.open} on the calling thread, for code that cannot await.
   *
   * @example
   * ```ts
   * const wal = WriteAheadLog.openSync('./data/wal')
   * ```
   */
  static openSync<KE extends Encoding = 'buffer', VE extends Encoding = 'buffer'>(dir: string | URL, options?: Options<KE, VE>): WriteAheadLog<Decoded<KE>, Decoded<VE>> {
    return new WriteAheadLog(openLogBlocking(dir, options))
  }

  /**
   * What console.log and util.inspect show: where, which backend, the positions, the state.
   *
   * @example
   * ```ts
   * console.log(wal) // WriteAheadLog { dir: '/srv/wal', backend: 'native', state: 'open', lastLsn: 42, ... }
   * ```
   */
  [inspect.custom](_depth: number, options: object): string {
    const state = this.closedFlag ? 'closed' : this.writer?.failed ? 'failed' : this.writer ? 'open' : 'open, readOnly'
    const fields = { dir: this.dir, backend: this.backend, state, lastLsn: this.lastLsn, durableLsn: this.closedFlag ? undefined : this.durableLsn, checkpointLsn: this.checkpointLsn, logId: this.logId }
    return `WriteAheadLog ${inspect(fields, options)}`
  }

  /**
   * Under sync 'none' or 'interval', what is staged is handed to the OS when the process
   * exits (process.exit() included), so appendSync followed by exit keeps the entry unless
   * the machine itself goes down. Nothing is synced there: that is what sync() is for.
   */
  private readonly onExit = () => {
    if (!this.closedFlag && this.writer && !this.writer.failed) {
      try {
        this.writer.drainBlocking(false)
      } catch {
        // the process is exiting: nothing to report to
      }
    }
  }

  /** Last appended LSN (0 when empty). */
  get lastLsn(): number {
    return (this.writer ?? this.view!).lastLsn
  }

  /** Every LSN up to this one is durable; for a readOnly handle, what the writer in another process last published. */
  get durableLsn(): number {
    if (this.writer) return this.writer.durableLsn
    if (!this.closedFlag) this.view!.refresh(false) // 16 bytes read: what the writer published last
    return this.view!.durableLsn
  }

  /** Latest checkpoint (0 if none). */
  get checkpointLsn(): number {
    return this.cpLsn
  }

  // --- appends -------------------------------------------------------------------------

  private writable(what: string): LogWriter {
    if (this.closedFlag) throw new WalError('WAL_CLOSED', `${what}: the WAL in ${this.dir} is closed. Open it again to continue.`)
    if (!this.writer) throw new WalError('WAL_READ_ONLY', `${what}: the WAL in ${this.dir} was opened with readOnly: true. Open it without readOnly to write.`)
    if (this.writer.failed) throw this.writer.failedError()
    return this.writer
  }

  private stageBatch(w: LogWriter, ops: unknown): { first: number; last: number } {
    const batch = normalizeBatch(ops, this.opts.maxRecordSize, this.opts.encodings)
    const n = batch.length
    const types = new Uint8Array(n)
    const keys: Uint8Array[] = new Array(n)
    const values: (Uint8Array | undefined)[] = new Array(n)
    let size = 2 * RECORD_HEADER_SIZE + 8
    for (let i = 0; i < n; i++) {
      const op = batch[i]
      types[i] = op.type
      keys[i] = op.key
      values[i] = op.value
      size += RECORD_HEADER_SIZE + op.size
    }
    if (size > MAX_PAYLOAD) throw new WalError('WAL_TOO_LARGE', `appendBatch: the batch encodes to ${size} bytes, over the 2 GiB a batch may take. Split it.`)
    checkLsnRoom(w, n, 'appendBatch')
    const first = w.stageBatch(types, keys, values, size)
    return { first, last: first + n - 1 }
  }

  private stageOne(w: LogWriter, op: unknown, what: string): number {
    const e = normalizeOp(op, this.opts.maxRecordSize, `${what}(op)`, this.opts.encodings)
    checkLsnRoom(w, 1, what)
    return w.stageOne(e)
  }

  /**
   * Appends one operation; resolves with its LSN once it is durable (sync 'always') or
   * handed to the OS ('interval', 'none').
   *
   * @example
   * ```ts
   * const lsn = await wal.append({ type: 'put', key: 'user:1', value: '{"name":"Ada"}' })
   * await wal.append({ type: 'del', key: 'user:0' })
   * ```
   */
  append(op: Operation<K, V>): Promise<number> {
    try {
      const w = this.writable('append')
      const lsn = this.stageOne(w, op, 'append')
      return w.waitFor(lsn, this.opts.sync === 'always')
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * Appends operations atomically: replay yields all of them or none, across any crash.
   * One write and one sync.
   *
   * @example
   * ```ts
   * const { first, last } = await wal.appendBatch([
   *   { type: 'put', key: 'acct:alice', value: '90' },
   *   { type: 'put', key: 'acct:bob', value: '110' },
   * ])
   * ```
   */
  appendBatch(ops: Operation<K, V>[]): Promise<LsnRange> {
    try {
      const w = this.writable('appendBatch')
      const r = this.stageBatch(w, ops)
      return w.waitFor(r, this.opts.sync === 'always')
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * {@link WriteAheadLog.append} on the calling thread: returns once durable (sync 'always').
   *
   * @example
   * ```ts
   * const lsn = wal.appendSync({ type: 'put', key: 'k', value: 'v' })
   * ```
   */
  appendSync(op: Operation<K, V>): number {
    const w = this.writable('appendSync')
    const lsn = this.stageOne(w, op, 'appendSync')
    w.settleBlocking()
    return lsn
  }

  /**
   * {@link WriteAheadLog.appendBatch} on the calling thread.
   *
   * @example
   * ```ts
   * const { first, last } = wal.appendBatchSync([{ type: 'del', key: 'a' }, { type: 'del', key: 'b' }])
   * ```
   */
  appendBatchSync(ops: Operation<K, V>[]): LsnRange {
    const w = this.writable('appendBatchSync')
    const r = this.stageBatch(w, ops)
    w.settleBlocking()
    return r
  }

  /**
   * Resolves once everything appended so far is durable (for sync 'interval' and 'none').
   *
   * @example
   * ```ts
   * wal.appendSync({ type: 'put', key: 'k', value: 'v' }) // under sync: 'none'
   * await wal.sync()
   * ```
   */
  sync(): Promise<void> {
    try {
      return this.writable('sync').syncAll()
    } catch (err) {
      return Promise.reject(err)
    }
  }

  // --- replay --------------------------------------------------------------------------

  /** Segments replay may read: a checkpoint's freed segments stay readable until the readers that need them pass. */
  private segments(): readonly SegmentRef[] {
    const w = this.writer
    if (!w) return this.view!.segments
    return this.doomed.length > 0 ? [...this.doomed, ...w.segments] : w.segments
  }

  private source(): LogSource {
    const w = this.writer
    const v = this.view
    return {
      dir: this.dir,
      backend: this.impl,
      segments: () => this.segments(),
      limitFor: w ? (name) => w.writtenEnd(name) : (name) => v!.limitFor(name),
      checkpointLsn: () => this.checkpointLsn,
      firstLsn: () => this.firstLsn,
      durableLsn: w ? () => w.durableLsn : () => v!.durableLsn, // (a follower refreshes the view when woken)
      recentBytes: w ? (name, position, max) => w.recentBytes(name, position, max) : undefined,
      live: !w,
      refresh: (full) => {
        if (!v) return
        v.refresh(full || this.listingStale)
        if (full || this.listingStale) this.prevLsnOf.clear()
        this.listingStale = false
      },
      changes: () => this.changeCount,
      onChange: (cb) => {
        this.changeWaiters.add(cb)
        if (v && !this.closedFlag) this.watch()
        return () => {
          this.changeWaiters.delete(cb)
          if (this.changeWaiters.size === 0) this.watcher?.keepAlive(false)
        }
      },
      track: (reader) => {
        this.readers.add(reader)
        return () => {
          if (reader.position() === Infinity) this.readers.delete(reader)
          // A closed handle touches nothing more; close() itself deletes what readers held.
          if (this.doomed.length > 0 && !this.closedFlag) this.reap().catch((err) => process.emitWarning(`fastwal: ${(err as Error).message}`, { code: 'FASTWAL_CHECKPOINT_DELETE' }))
        }
      },
    }
  }

  private readOptions(what: string, opts: unknown, allowSignal: boolean): { from: number; signal?: AbortSignal } {
    if (this.closedFlag) throw new WalError('WAL_CLOSED', `${what}: the WAL in ${this.dir} is closed. Open it again to replay.`)
    if (opts === undefined) return { from: this.checkpointLsn + 1 }
    if (opts === null || typeof opts !== 'object') throw new WalError('WAL_INVALID', `${what}(opts): opts must be an object like { from: 1 }.`)
    const known = allowSignal ? ['from', 'signal'] : ['from']
    for (const k of Object.keys(opts)) if (!known.includes(k)) throw new WalError('WAL_INVALID', `${what}(opts): unknown option '${k}'; ${what} takes ${known.map((n) => `'${n}'`).join(' and ')}.`)
    const { from, signal } = opts as { from?: unknown; signal?: unknown }
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new WalError('WAL_INVALID', `${what}(opts): signal must be an AbortSignal; got ${typeof signal}.`)
    if (from === undefined) return { from: this.checkpointLsn + 1, signal }
    if (typeof from !== 'number' || !Number.isInteger(from) || from < 0) throw new WalError('WAL_INVALID', `${what}: from must be a non-negative integer LSN; got ${String(from)}.`)
    return { from, signal }
  }

  /**
   * Lowest LSN replay can still yield (lastLsn + 1 when none is retained): the first retained segment continues after its
   * header's prevLsn. Segments a checkpoint freed count while a reader keeps them.
   */
  get firstLsn(): number {
    const first = this.segments()[0]
    const last = this.lastLsn
    if (!first) return last + 1
    let prev = this.prevLsnOf.get(first.name)
    if (prev === undefined) {
      prev = readPrevLsn(this.dir, first, this.impl) ?? first.firstLsn - 1
      this.prevLsnOf.set(first.name, prev)
    }
    return Math.min(prev + 1, last + 1)
  }

  /** A writer's reader first has everything staged handed to the OS, so it reads it. */
  private flushBeforeRead(): (() => Promise<void>) | undefined {
    const w = this.writer
    return w ? () => w.writeStaged() : undefined
  }

  /**
   * Entries with lsn >= from (default: after the latest checkpoint), committed batches only,
   * in LSN order; ends at the last entry present when it reaches it.
   *
   * @example
   * ```ts
   * for await (const e of wal.replay()) {
   *   if (e.type === 'put') db.set(e.key, e.value)
   *   else db.delete(e.key)
   * }
   * ```
   */
  replay(opts?: ReadOptions): AsyncIterableIterator<Entry<K, V>> {
    const { from, signal } = this.readOptions('replay', opts, true)
    return replayEntriesAsync(this.source(), from, this.flushBeforeRead(), signal, this.opts.encodings) as AsyncIterableIterator<never>
  }

  /**
   * Like {@link WriteAheadLog.replay}, a committed batch at a time (a standalone append is
   * a batch of one).
   *
   * @example
   * ```ts
   * for await (const b of wal.replayBatches({ from: 0 })) await db.applyAtomically(b.entries)
   * ```
   */
  replayBatches(opts?: ReadOptions): AsyncIterableIterator<Batch<K, V>> {
    const { from, signal } = this.readOptions('replayBatches', opts, true)
    return replayBatchesAsync(this.source(), from, this.flushBeforeRead(), signal, this.opts.encodings) as AsyncIterableIterator<never>
  }

  /**
   * What replay yields, then every later committed entry once it is durable, in LSN
   * order; ends when the handle closes or `signal` aborts. Works on a readOnly handle
   * while a writer in another process appends.
   *
   * @example
   * ```ts
   * const reader = await WriteAheadLog.open('./data/wal', { readOnly: true })
   * const cursor = await reader.cursor('indexer')
   * for await (const e of reader.follow({ from: cursor.lsn + 1 })) {
   *   await index(e)
   *   await cursor.confirm(e.lsn)
   * }
   * ```
   */
  follow(opts?: ReadOptions): AsyncIterableIterator<Entry<K, V>> {
    const { from, signal } = this.readOptions('follow', opts, true)
    return followEntries(this.source(), from, this.flushBeforeRead(), signal, this.opts.encodings) as AsyncIterableIterator<never>
  }

  /**
   * {@link WriteAheadLog.follow} a committed batch at a time.
   *
   * @example
   * ```ts
   * for await (const b of wal.followBatches()) await publish(b.first, b.last, b.entries)
   * ```
   */
  followBatches(opts?: ReadOptions): AsyncIterableIterator<Batch<K, V>> {
    const { from, signal } = this.readOptions('followBatches', opts, true)
    return followBatches(this.source(), from, this.flushBeforeRead(), signal, this.opts.encodings) as AsyncIterableIterator<never>
  }

  /** @internal Follows whole batches with their records' bytes (fastwal/jetstream). */
  [FOLLOW_RAW](from: number, signal?: AbortSignal): AsyncIterableIterator<RawBatch> {
    if (this.closedFlag) throw new WalError('WAL_CLOSED', `The WAL in ${this.dir} is closed.`)
    return followRawBatches(this.source(), from, this.flushBeforeRead(), signal)
  }

  /** Wakes every waiting follower: the writer made more durable, the directory changed, or the handle closes. */
  private wakeFollowers(): void {
    this.changeCount++
    if (this.changeWaiters.size === 0) return
    const waiters = [...this.changeWaiters]
    this.changeWaiters.clear()
    this.watcher?.keepAlive(false) // until a follower waits again
    for (const cb of waiters) cb()
  }

  /** readOnly: follows the writer in another process through the directory (log-watcher.ts). */
  private watch(): void {
    if (!this.watcher)
      this.watcher = new LogWatcher(this.dir, (c) => {
        if (c.listing) this.listingStale = true
        if (c.segmentWrite && this.view!.published) return // the durable LSN says when records count
        this.wakeFollowers()
      })
    this.watcher.start()
    this.watcher.keepAlive(true)
  }

  /**
   * {@link WriteAheadLog.replay} on the calling thread.
   *
   * @example
   * ```ts
   * for (const e of wal.replaySync({ from: 0 })) console.log(e.lsn, e.type)
   * ```
   */
  replaySync(opts?: { from?: number }): IterableIterator<Entry<K, V>> {
    const { from } = this.readOptions('replaySync', opts, false)
    if (this.writer && !this.writer.failed) this.writer.drainBlocking(false)
    return replayEntriesSync(this.source(), from, this.opts.encodings) as IterableIterator<never>
  }

  // --- checkpoint ----------------------------------------------------------------------

  /**
   * Records that everything up to `lsn` is applied elsewhere: replay then starts after it,
   * and segments holding only LSNs up to it (and below every cursor) are deleted.
   *
   * @example
   * ```ts
   * await db.flush()
   * await wal.checkpoint(appliedLsn)
   * ```
   */
  async checkpoint(lsn: number): Promise<void> {
    const w = this.writable('checkpoint')
    if (typeof lsn !== 'number' || !Number.isInteger(lsn) || lsn < 0)
      throw new WalError('WAL_INVALID', `checkpoint(lsn): lsn must be a non-negative integer; got ${String(lsn)}.`)
    if (lsn > w.lastLsn)
      throw new WalError('WAL_INVALID', `checkpoint(${lsn}): only LSNs up to lastLsn (${w.lastLsn}) can be checkpointed.`)
    if (lsn > this.cpLsn) {
      w.stageCheckpoint(lsn)
      await w.syncAll()
      this.cpLsn = Math.max(this.cpLsn, lsn)
    }
    // Closed meanwhile (closeSync made the record durable): a closed handle deletes
    // nothing; a later checkpoint frees these segments again.
    if (this.closedFlag) return
    // Segments holding an entry above any cursor stay (a checkpoint at or below the last
    // one still deletes what cursors have since released).
    let keep = this.cpLsn
    let heldBy = 0
    for (const c of (await readCursors(this.dir, this.impl)).values())
      if (c < keep) {
        keep = c
        heldBy++
      }
    if (this.closedFlag) return
    // Out of the writer's list before the first await, so a concurrent checkpoint sees the rest.
    const freed = w.deleteThrough(keep)
    this.doomed.push(...freed)
    await this.reap() // after any deletion already under way
    if (channels.checkpoint.hasSubscribers) channels.checkpoint.publish({ dir: this.dir, lsn: this.cpLsn, deletedSegments: freed.length, heldByCursors: heldBy })
  }

  // --- cursors and stats ---------------------------------------------------------------

  /**
   * Opens the named cursor, creating it at firstLsn - 1; allowed on readOnly handles.
   * Checkpoints keep every segment a cursor still needs.
   *
   * @example
   * ```ts
   * const c = await wal.cursor('search-indexer')
   * for await (const e of wal.follow({ from: c.lsn + 1 })) await c.confirm(e.lsn)
   * ```
   */
  async cursor(name: string): Promise<Cursor> {
    checkCursorName(name)
    this.cursorHost.check('cursor')
    this.cursorCache = undefined
    return openCursor(this.cursorHost, name, this.firstLsn - 1)
  }

  /**
   * Counters and positions; reads the directory at most once a second (for cursors).
   *
   * @example
   * ```ts
   * console.log(wal.stats().groupCommit.mean) // appends per fdatasync
   * ```
   */
  stats(): Stats {
    const w = this.writer
    const segs = this.segments()
    const sizes = segs.map((s) => this.segmentSize(s))
    const bytesOnDisk = sizes.reduce((a, b) => a + b, 0)
    const now = Date.now()
    if (!this.cursorCache || now - this.cursorCache.at > 1000) this.cursorCache = { at: now, cursors: readCursorsBlocking(this.dir, this.impl) }
    const last = this.lastLsn
    const cursors = [...this.cursorCache.cursors].map(([name, lsn]) => {
      let lagBytes = 0
      // What it keeps: the segments holding entries above its LSN.
      for (let i = 0; i < segs.length; i++) if (i + 1 >= segs.length || segs[i + 1].firstLsn - 1 > lsn) lagBytes += sizes[i]
      return { name, lsn, lagEntries: Math.max(0, last - lsn), lagBytes: lsn >= last ? 0 : lagBytes }
    })
    const c = w?.counters
    return {
      lastLsn: last,
      durableLsn: this.durableLsn,
      firstLsn: this.firstLsn,
      checkpointLsn: this.checkpointLsn,
      segments: segs.length,
      bytesOnDisk,
      appends: c?.appends ?? 0,
      batches: c?.batches ?? 0,
      bytesWritten: c?.bytesWritten ?? 0,
      syncs: c?.syncs ?? 0,
      syncLatencyUs: { p50: c?.syncLatency.percentile(50) ?? 0, p99: c?.syncLatency.percentile(99) ?? 0, max: Math.round(c?.syncLatency.max ?? 0) },
      groupCommit: { mean: c && c.groupSyncs > 0 ? c.syncedGroups / c.groupSyncs : 0, max: c?.maxGroupSize ?? 0 },
      rotations: c?.rotations ?? 0,
      bytesPreallocated: c?.bytesPreallocated ?? 0,
      readers: this.readers.size,
      cursors,
    }
  }

  /** A segment's size on disk: finished segments are measured once; the writer's current one is known. */
  private segmentSize(s: SegmentRef): number {
    const cur = this.writer?.currentSegment
    if (cur && cur.name === s.name) return Math.max(cur.end, cur.zeroEnd)
    let size = this.sizeOf.get(s.name)
    if (size === undefined) {
      try {
        size = fs.statSync(join(this.dir, s.name)).size
      } catch {
        return 0
      }
      if (this.writer) this.sizeOf.set(s.name, size) // a readOnly handle's last segment may still grow
    }
    return size
  }

  /**
   * Deletes freed segments that no unfinished reader of this handle still needs (those
   * older than every reader's position). One run at a time.
   */
  private reap(): Promise<void> {
    const run = async (): Promise<void> => {
      let min = Infinity
      for (const r of this.readers) min = Math.min(min, r.position())
      // Taken out of view in the same tick as the positions were read: a reader that
      // starts later never lists a segment about to be deleted.
      let k = 0
      while (k < this.doomed.length && this.doomed[k].firstLsn < min) k++
      this.deleting.push(...this.doomed.splice(0, k))
      // Oldest first, each deletion durable before the next: a crash then leaves a log that
      // starts later, never one with a hole in the middle.
      while (this.deleting.length > 0) {
        if (this.closedFlag && !this.finalReap) return // closeSync deleted them itself
        const s = this.deleting[0]
        const path = join(this.dir, s.name)
        this.prevLsnOf.delete(s.name)
        try {
          await fsCall<void>((cb) => fs.unlink(path, cb))
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, 'Deleting a checkpointed segment', path, 'checkpoint')
        }
        await syncDirAsync(this.dir, 'checkpoint')
        if (this.deleting[0] === s) this.deleting.shift()
      }
    }
    // One at a time; a failure is reported to the checkpoint that waits for it.
    const p = this.reaping.then(run, run)
    this.reaping = p.catch(() => undefined)
    return p
  }

  // --- close ---------------------------------------------------------------------------

  /** Ends every reader of this handle: their files close, their next() gives WAL_CLOSED. */
  private closeReaders(): void {
    const err = new WalError('WAL_CLOSED', `The WAL in ${this.dir} was closed while this iterator was reading it. Open it again to read on.`)
    for (const r of [...this.readers]) r.abort(err)
    this.readers.clear()
  }

  /**
   * Flushes, syncs and releases the lock and every file of the handle. Idempotent. Rejects
   * with WAL_IO if its own final write or sync fails (never retried); after an earlier
   * failure it does not sync and resolves.
   *
   * @example
   * ```ts
   * process.on('SIGTERM', () => wal.close().then(() => process.exit(0)))
   * ```
   */
  close(): Promise<void> {
    if (this.closing) return this.closing
    this.closedFlag = true
    this.closing = (async () => {
      const w = this.writer
      let failure: unknown
      try {
        if (w && !w.failed) await w.syncAll().catch((err) => (failure = err))
        // After a failure a pool write may still be pending: let it land before another
        // writer can take the lock and repair the tail under it.
        if (w) await new Promise<void>((resolve) => w.whenIdle(resolve))
        if (w) await w.preallocationSettled()
        this.closeReaders()
        // Segments that readers kept from a checkpoint are deleted now, under the lock. A
        // failure leaves them for a later checkpoint; it is not close()'s own write or sync.
        this.finalReap = true
        if (w) await this.reap().catch(() => undefined)
      } finally {
        this.closeReaders()
        this.endWatching()
        w?.shutdown()
        this.publisher?.close(w?.durableLsn ?? 0)
        this.lock?.release()
        flushAtExit(this.onExit, false)
      }
      if (failure !== undefined) throw failure
    })()
    return this.closing
  }

  /** Followers end; the directory is no longer watched. */
  private endWatching(): void {
    this.watcher?.stop()
    this.wakeFollowers()
  }

  /**
   * {@link WriteAheadLog.close} on the calling thread.
   *
   * @example
   * ```ts
   * wal.appendSync({ type: 'put', key: 'k', value: 'v' })
   * wal.closeSync()
   * process.exit(0)
   * ```
   */
  closeSync(): void {
    if (this.closing) return
    this.closedFlag = true
    const w = this.writer
    let failure: unknown
    try {
      if (w && !w.failed) {
        try {
          w.drainBlocking(true)
        } catch (err) {
          failure = err // the pending appends were rejected with WAL_IO too
        }
      }
    } finally {
      this.closeReaders()
      this.endWatching()
      if (w) this.reapSync()
      w?.shutdown()
      this.publisher?.close(w?.durableLsn ?? 0)
      flushAtExit(this.onExit, false)
      const lock = this.lock
      // Without a failure, drainSync rewrote any in-flight bytes; with one, the lock waits
      // for the pending pool write (see close()).
      if (w?.failed && lock) w.whenIdle(() => lock.release())
      else lock?.release()
    }
    this.closing = failure === undefined ? Promise.resolve() : Promise.reject(failure)
    this.closing.catch(() => undefined)
    if (failure !== undefined) throw failure
  }

  /**
   * closeSync's reap: deletes, on this thread, every freed segment (readers are closed, so
   * none is needed), including one whose deletion is under way on the thread pool; the
   * pool's run stops at its next step and finds the file gone. Failures leave the files
   * for a later checkpoint.
   */
  private reapSync(): void {
    const rest = [...this.deleting, ...this.doomed]
    this.deleting.length = 0
    this.doomed.length = 0
    for (const s of rest) {
      try {
        fs.rmSync(join(this.dir, s.name), { force: true })
        syncDir(this.dir, 'checkpoint')
      } catch {
        return
      }
    }
  }

  /**
   * close(), for `await using`.
   *
   * @example
   * ```ts
   * await using wal = await WriteAheadLog.open('./data/wal')
   * await wal.append({ type: 'put', key: 'k', value: 'v' })
   * // closed at the end of the block
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }
}
