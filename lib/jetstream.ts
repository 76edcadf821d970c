// fastwal/jetstream: ships a log into a NATS JetStream stream, one message per committed
// batch, exactly once and in LSN order.
//
// How "exactly once, no gap" holds:
//  - the resume point is read from the stream itself: the last message on this log's
//    subject names its last LSN (Fastwal-Last), so correctness never rests on JetStream's
//    duplicate window;
//  - every publish carries the expected last sequence of the subject (the stream sequence
//    of the message before it), so the stream refuses a message whose predecessor is not
//    stored: a failed publish can never leave a later one stored before it. On a stream
//    that holds only this log's subject, publishes are pipelined by predicting each
//    sequence as the one before plus one (no other writer can move it; an ack at any
//    other sequence stops and resyncs); on a shared stream each publish waits for the ack
//    of the one before, whose sequence it then expects exactly;
//  - on any error the shipper stops, waits for every publish in flight, reads the
//    stream's real last message again and follows the log from after it;
//  - Nats-Msg-Id <logId>:<first> lets the server drop a duplicate as a second line of defence;
//  - the cursor is confirmed only up to what the stream acknowledged, so the writer's
//    checkpoint never deletes what has not been shipped.
// The NATS clients are optional peer dependencies, loaded here and only here.
import { EventEmitter } from 'node:events'
import { WalError } from './errors.js'
import { redact } from './redact.js'
import type { Cursor } from './cursors.js'
import type { RawBatch } from './record-cursor.js'
import { FOLLOW_RAW } from './replay.js'
import type { WriteAheadLog } from './wal.js'

type Nats = typeof import('@nats-io/transport-node')
type Js = typeof import('@nats-io/jetstream')
type NatsConnection = Awaited<ReturnType<Nats['connect']>>
type ConnectOptions = NonNullable<Parameters<Nats['connect']>[0]>

function load(): { nats: Nats; js: Js } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nats = require('@nats-io/transport-node') as Nats
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const js = require('@nats-io/jetstream') as Js
    return { nats, js }
  } catch (err) {
    throw new WalError(
      'WAL_INVALID',
      `fastwal/jetstream needs the NATS clients, optional peer dependencies of fastwal that are not installed (${(err as Error).message.split('\n')[0]}). Install them: npm install @nats-io/transport-node @nats-io/jetstream`,
      { cause: err },
    )
  }
}

const { nats, js: jsLib } = load()

/**
 * Options of {@link shipToJetStream}.
 *
 * @example
 * ```ts
 * const opts: ShipOptions = { servers: 'nats://127.0.0.1:4222', stream: 'ORDERS', cursor: 'jetstream' }
 * ```
 */
export interface ShipOptions {
  /** NATS server URL(s). Credentials in a URL are never printed. */
  servers: string | string[]
  /** The stream; created if missing (file storage, this log's subject). */
  stream: string
  /** Default `fastwal.<logId>`. */
  subject?: string
  /** The cursor confirmed at shippedLsn; default 'jetstream'. */
  cursor?: string
  /** Passed to the NATS client's connect(): user/pass, token, authenticator (creds, NKeys), tls. */
  connection?: Partial<ConnectOptions>
  /** Publishes awaiting their acknowledgement at once; default 64. */
  maxInFlight?: number
  /** Called with each failure (also emitted as 'error' when there are listeners). Failures are retried. */
  onError?: (err: Error) => void
}

/**
 * What {@link Shipper.stats} returns.
 *
 * @example
 * ```ts
 * const { shippedLsn, lagEntries } = shipper.stats()
 * ```
 */
export interface ShipperStats {
  /** Highest LSN the stream has acknowledged. */
  shippedLsn: number
  /** Batches the stream acknowledged in this run. */
  published: number
  /** Failures retried. */
  errors: number
  /** The last failure's message (secrets removed). */
  lastError: string | undefined
  /** Durable entries not yet shipped. */
  lagEntries: number
}

export { redact }

const WRONG_LAST_SEQUENCE = 10071 // JetStream: the expected last subject sequence does not match

/**
 * Ships a log's committed batches into a JetStream stream, each batch once, in order, one
 * message per batch. Events: 'error' (a failure, retried), 'shipped' (the last LSN of each
 * batch the stream acknowledged).
 *
 * @example
 * ```ts
 * const shipper = await shipToJetStream(wal, { servers: 'nats://127.0.0.1:4222', stream: 'ORDERS' })
 * shipper.on('error', (err) => log.warn(err.message))
 * // ...
 * await shipper.stop()
 * ```
 */
export class Shipper extends EventEmitter {
  private shipped = 0
  private lastSeq = 0 // stream sequence of this log's last message in the stream
  private published = 0
  private errors = 0
  private lastError: string | undefined
  private stopping = false
  private abort = new AbortController()
  private running: Promise<void> | undefined
  private confirmTimer: NodeJS.Timeout | undefined
  private confirmed = 0
  private nc: NatsConnection | undefined
  private readonly subject: string
  private readonly logId: string
  /** The stream holds only this log's subject: stream sequences are predictable, publishes are pipelined. */
  private dedicated = false

  constructor(
    private readonly wal: WriteAheadLog<any, any>,
    private readonly opts: ShipOptions,
    private readonly cursor: Cursor,
  ) {
    super()
    this.logId = wal.logId
    this.subject = opts.subject ?? `fastwal.${this.logId}`
  }

  /** Highest LSN the stream has acknowledged. */
  get shippedLsn(): number {
    return this.shipped
  }

  /**
   * Counters of this run and how far behind the log it is.
   *
   * @example
   * ```ts
   * setInterval(() => console.log(shipper.stats().lagEntries), 10_000)
   * ```
   */
  stats(): ShipperStats {
    return { shippedLsn: this.shipped, published: this.published, errors: this.errors, lastError: this.lastError, lagEntries: Math.max(0, this.wal.durableLsn - this.shipped) }
  }

  /**
   * Finishes the publishes in flight, confirms the cursor, closes the connection.
   *
   * @example
   * ```ts
   * await shipper.stop()
   * await wal.close()
   * ```
   */
  async stop(): Promise<void> {
    this.stopping = true
    this.abort.abort(new Error('stopping'))
    await this.running?.catch(() => undefined)
    if (this.confirmTimer) clearInterval(this.confirmTimer)
    await this.confirm()
    await this.nc?.close().catch(() => undefined)
  }

  /** @internal */
  start(): void {
    this.confirmTimer = setInterval(() => void this.confirm(), 250)
    this.confirmTimer.unref()
    this.running = this.loop()
  }

  private async loop(): Promise<void> {
    let backoff = 100
    while (!this.stopping) {
      try {
        await this.connect()
        await this.resync()
        await this.ship()
        backoff = 100
      } catch (err) {
        if (this.stopping) break
        if ((err as WalError).code === 'WAL_CLOSED') {
          // The log was closed under the shipper: nothing more to ship.
          this.stopping = true
          break
        }
        this.report(err as Error)
        await new Promise((r) => setTimeout(r, backoff).unref())
        backoff = Math.min(backoff * 2, 5000)
      }
    }
  }

  private async connect(): Promise<void> {
    if (this.nc && !this.nc.isClosed()) return
    this.nc = await nats.connect({
      name: `fastwal-shipper:${this.logId}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ...this.opts.connection,
      servers: this.opts.servers,
    })
    const jsm = await jsLib.jetstreamManager(this.nc)
    try {
      const info = await jsm.streams.info(this.opts.stream)
      let subjects = info.config.subjects ?? []
      if (!subjects.some((s) => subjectMatches(s, this.subject))) {
        subjects = [...subjects, this.subject]
        await jsm.streams.update(this.opts.stream, { subjects })
      }
      this.dedicated = subjects.length === 1 && subjects[0] === this.subject
    } catch (err) {
      if (!(err instanceof jsLib.JetStreamApiError) || !/not found/i.test(err.message)) throw err
      await jsm.streams.add({ name: this.opts.stream, subjects: [this.subject], storage: jsLib.StorageType.File })
      this.dedicated = true
    }
  }

  /** Where the stream is: this log's last message there, read from the stream itself. */
  private async resync(): Promise<void> {
    const jsm = await jsLib.jetstreamManager(this.nc!)
    const m = await jsm.streams.getMessage(this.opts.stream, { last_by_subj: this.subject })
    if (!m) {
      this.lastSeq = 0
      return
    }
    const last = Number(m.header.get('Fastwal-Last'))
    if (!Number.isSafeInteger(last) || m.header.get('Fastwal-Log') !== this.logId)
      throw new WalError('WAL_INVALID', `The last message on subject ${this.subject} of stream ${this.opts.stream} is not a batch of this log (logId ${this.logId}); pick another subject.`)
    this.lastSeq = m.seq
    this.shipped = last
  }

  private async ship(): Promise<void> {
    const js = jsLib.jetstream(this.nc!)
    let from = this.shipped + 1
    if (from < this.wal.firstLsn) {
      if (this.shipped > 0)
        this.report(new WalError('WAL_GONE', `Entries ${from} to ${this.wal.firstLsn - 1} of the log in ${this.wal.dir} were deleted before they were shipped to stream ${this.opts.stream} (the stream was purged, or the log was checkpointed without this shipper's cursor); shipping goes on from ${this.wal.firstLsn}.`, { firstLsn: this.wal.firstLsn }))
      from = this.wal.firstLsn
    }
    // Pipelining predicts each message's stream sequence; with other subjects in the stream a
    // guess could be wrong and a later one right by chance, so there each publish waits for
    // the ack before it and expects exactly that sequence.
    const max = this.dedicated ? Math.max(1, this.opts.maxInFlight ?? 64) : 1
    // Stopped by stop() or by a failed publish.
    const local = new AbortController()
    const onStop = () => local.abort(new Error('stopping'))
    this.abort.signal.addEventListener('abort', onStop, { once: true })
    if (this.abort.signal.aborted) onStop()
    const it = this.wal[FOLLOW_RAW](from, local.signal)
    let failure: unknown
    let pending = 0
    let room: (() => void) | undefined
    // Acknowledgements are taken in publish order: shippedLsn only ever covers a prefix.
    let acks: Promise<void> = Promise.resolve()
    const track = (b: RawBatch, ack: Promise<{ seq: number; duplicate: boolean }>, expected: number) => {
      acks = acks.then(async () => {
        try {
          if (failure === undefined) {
            const a = await ack
            if (a.duplicate) throw new Error(`JetStream reported batch ${b.first}-${b.last} as a duplicate; resyncing`)
            // Stored right after its predecessor, or the stream moved under us: stop and resync.
            if (expected !== 0 && a.seq !== expected + 1 && this.dedicated) throw new Error(`batch ${b.first}-${b.last} was stored at stream sequence ${a.seq}, not ${expected + 1}; resyncing`)
            this.lastSeq = a.seq
            this.shipped = b.last
            this.published++
            if (this.listenerCount('shipped') > 0) this.emit('shipped', b.last)
          }
        } catch (err) {
          failure ??= err
          local.abort(err) // publish nothing more: a later message must never be stored before this one
        } finally {
          pending--
          room?.()
        }
      })
    }
    let predicted = this.lastSeq // stream sequence of the message before the next one (0: none yet, unknown)
    try {
      for (;;) {
        while (pending >= max && failure === undefined) await new Promise<void>((r) => (room = r))
        if (failure !== undefined) break
        const r = await it.next()
        if (r.done) break
        const b = r.value
        const h = (nats as unknown as { headers(): { set(k: string, v: string): void } }).headers()
        h.set('Fastwal-Log', this.logId)
        h.set('Fastwal-First', String(b.first))
        h.set('Fastwal-Last', String(b.last))
        const ack = js.publish(this.subject, b.bytes, { msgID: `${this.logId}:${b.first}`, headers: h as never, expect: { lastSubjectSequence: predicted } })
        ack.catch(() => undefined) // taken in order by track()
        pending++
        track(b, ack, predicted)
        if (predicted === 0 || !this.dedicated) {
          // The subject's first message, or a shared stream: the next expectation comes from this ack.
          await acks
          predicted = this.lastSeq
        } else predicted++
      }
    } catch (err) {
      if (!this.stopping) failure ??= err
    }
    this.abort.signal.removeEventListener('abort', onStop)
    await it.return?.()
    await acks // every publish in flight settles before anything is decided
    if (this.stopping) return
    if (failure !== undefined) {
      const e = failure as { code?: number; message?: string }
      if (e.code === WRONG_LAST_SEQUENCE || /wrong last sequence/i.test(String(e.message))) throw new Error('the stream does not continue where the shipper expected (another publisher on the stream, or a lost acknowledgement); resyncing')
      throw failure
    }
  }

  private async confirm(): Promise<void> {
    const lsn = this.shipped
    if (lsn <= this.confirmed) return
    try {
      await this.cursor.confirm(lsn)
      this.confirmed = lsn
    } catch (err) {
      if (!this.stopping || (err as WalError).code !== 'WAL_CLOSED') this.report(err as Error)
    }
  }

  private report(err: Error): void {
    this.errors++
    const clean = new Error(redact(err.message ?? String(err)))
    ;(clean as { code?: unknown }).code = (err as { code?: unknown }).code
    this.lastError = clean.message
    this.opts.onError?.(clean)
    if (this.listenerCount('error') > 0) this.emit('error', clean)
  }
}

function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.')
  const s = subject.split('.')
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return i < s.length
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false
  }
  return p.length === s.length
}

/**
 * Starts shipping `wal` (writable or readOnly) into the stream: from the batch after the
 * last one the stream holds, exactly once (message ids dedup a resend after a crash).
 *
 * @example
 * ```ts
 * import { WriteAheadLog } from 'fastwal'
 * import { shipToJetStream } from 'fastwal/jetstream'
 *
 * const wal = await WriteAheadLog.open('./data/wal', { readOnly: true })
 * const shipper = await shipToJetStream(wal, { servers: 'nats://127.0.0.1:4222', stream: 'ORDERS' })
 * ```
 */
export async function shipToJetStream(wal: WriteAheadLog<any, any>, opts: ShipOptions): Promise<Shipper> {
  if (!opts || typeof opts !== 'object') throw new WalError('WAL_INVALID', 'shipToJetStream(wal, opts): opts must be an object like { servers, stream }.')
  if (typeof opts.stream !== 'string' || !/^[^\s.*>/\\]+$/.test(opts.stream)) throw new WalError('WAL_INVALID', `shipToJetStream: stream must be a JetStream stream name (no spaces, '.', '*', '>'); got ${JSON.stringify(opts.stream)}.`)
  if (!opts.servers || (typeof opts.servers !== 'string' && !Array.isArray(opts.servers))) throw new WalError('WAL_INVALID', 'shipToJetStream: servers must be a URL or a list of URLs, like nats://127.0.0.1:4222.')
  if (!wal.logId) throw new WalError('WAL_INVALID', `shipToJetStream: the log in ${wal.dir} has no logId yet (a log written by an older fastwal); open it once writable to give it one.`)
  const cursor = await wal.cursor(opts.cursor ?? 'jetstream')
  const s = new Shipper(wal, opts, cursor)
  s.start()
  return s
}
