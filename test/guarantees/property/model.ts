// Model checker for random interleavings of appends, syncs, checkpoints, replays and
// reopens. `runScenario` interprets a plain, printable list of `Op`s against a real
// WriteAheadLog and a model of what it must hold, and throws on the first divergence. The
// ops carry fractions and seeds rather than absolute LSNs and bytes, so any sub-list of a
// failing list (what fast-check tries while shrinking) is still a valid scenario.
import * as fs from 'node:fs'
import { WriteAheadLog } from '../../../lib/index.js'
import { prng } from '../../helpers/prng.js'

export type BackendName = 'native' | 'js'
export type SyncMode = 'always' | 'interval' | 'none'

export interface Config {
  backend: BackendName
  sync: SyncMode
  syncIntervalMs: number
  preallocate: boolean
  segmentSize: number
}

/** async: called, settled later (un-awaited, group commit); await: awaited at once; sync: appendSync/appendBatchSync. */
export type Mode = 'async' | 'await' | 'sync'
/** default: no `from`; zero: `{ from: 0 }`; a number in [0, 1]: that fraction of [lowest retained, lastLsn + 1]. */
export type From = 'default' | 'zero' | number
export type Kind = 'entries' | 'batches' | 'sync'

export type Op =
  | { t: 'put'; mode: Mode; size: number; seed: number; del?: true }
  | { t: 'batch'; mode: Mode; n: number; size: number; seed: number }
  /** n small standalone appends in a row (puts, some dels): fills segments fast. */
  | { t: 'fill'; mode: Mode; n: number; size: number; seed: number }
  /** Await one pending operation (pick: a fraction of the pending list), or all of them. */
  | { t: 'settle'; all: boolean; pick: number }
  | { t: 'sync'; await: boolean }
  /** checkpoint(round(at * lastLsn)). */
  | { t: 'checkpoint'; at: number; await: boolean }
  /** for await (const e of wal.replay()) await wal.checkpoint(e.lsn)  (or replayBatches / b.last) */
  | { t: 'consume'; kind: 'entries' | 'batches' }
  | { t: 'replay'; kind: Kind; from: From }
  /** Take `take` items, checkpoint(round(at * lastLsn)) (at -1: the last LSN yielded), start `appends` un-awaited appends, then end the iterator. */
  | { t: 'mid'; kind: Kind; from: From; take: number; at: number; appends: number; end: 'continue' | 'abandon' | 'return' }
  | { t: 'reopen'; closeSync: boolean; openSync: boolean; change?: Partial<Omit<Config, 'syncIntervalMs'>> }

// --- data ------------------------------------------------------------------------------

interface ModelEntry {
  lsn: number
  type: 'put' | 'del'
  key: Buffer
  value: Buffer | undefined
}

interface InputOp {
  type: 'put' | 'del'
  key: string | Uint8Array
  value?: string | Uint8Array
}

interface Unit {
  idx: number // call order
  ops: InputOp[]
  norm: { type: 'put' | 'del'; key: Buffer; value: Buffer | undefined }[]
  batch: boolean
  what: string // for messages
  predicted: number // wal.lastLsn read right after the call (the unit's last LSN)
  first?: number
  last?: number
  ackSeq?: number // event counter when acknowledged
  error?: unknown
  promise?: Promise<unknown>
  wal?: WriteAheadLog // the handle it was appended through
  always?: boolean // that handle's sync mode was 'always'
}

const toBuf = (b: string | Uint8Array) => (typeof b === 'string' ? Buffer.from(b, 'utf8') : Buffer.from(b.buffer, b.byteOffset, b.byteLength))

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789-_ é€😀'

/** Deterministic operation content: strings (some non-ASCII) or bytes, empty ones included. */
export function makeOp(rand: () => number, maxSize: number, del: boolean, tag: string): InputOp {
  const keyLen = rand() % 5 === 0 ? 0 : rand() % 17
  const valLen = maxSize <= 0 ? 0 : rand() % 7 === 0 ? 0 : 1 + (rand() % maxSize)
  const asString = rand() % 2 === 0
  const gen = (n: number): string | Uint8Array => {
    if (asString) {
      let s = ''
      while (s.length < n) s += ALPHABET[rand() % ALPHABET.length]
      return s
    }
    const b = new Uint8Array(n)
    for (let i = 0; i < n; i++) b[i] = rand() & 0xff
    return b
  }
  // Half the keys carry a tag, so a swapped or stale entry is easy to spot in a message.
  const key = rand() % 2 === 0 ? tag + (asString ? (gen(keyLen) as string) : Buffer.from(gen(keyLen) as Uint8Array).toString('hex')) : gen(keyLen)
  return del ? { type: 'del', key } : { type: 'put', key, value: gen(valLen) }
}

function normalize(op: InputOp) {
  return { type: op.type, key: toBuf(op.key), value: op.type === 'put' ? toBuf(op.value ?? '') : undefined }
}

// --- replay observations ---------------------------------------------------------------

interface Seen {
  label: string
  kind: 'entries' | 'batches'
  from: number // effective from (0 allowed)
  /** Items from the first one yielded must start exactly at `from` (nothing below it may have been deleted). */
  exactStart: boolean
  /** Every item acknowledged before the replay began with LSN >= reqLo must be yielded (when complete). */
  reqLo: number
  startSeq: number
  unitsBefore: number // units called before the replay ended
  complete: boolean // ran to done (false: returned/abandoned: only a prefix is checked)
  firstLsnAtStart?: number // wal.firstLsn when from was 0 and no checkpoint was pending
  items: (ModelEntry | { first: number; last: number; entries: ModelEntry[] })[]
}

export class Finding extends Error {}

function fmtBuf(b: Buffer | undefined): string {
  if (b === undefined) return 'undefined'
  const s = b.toString('hex')
  return s.length > 40 ? `${s.slice(0, 40)}…(${b.length}B)` : `<${s}>`
}

function sameEntry(a: ModelEntry, b: ModelEntry): boolean {
  if (a.lsn !== b.lsn || a.type !== b.type) return false
  if (!Buffer.isBuffer(a.key) || !a.key.equals(b.key)) return false
  if (b.value === undefined) return a.value === undefined
  return Buffer.isBuffer(a.value) && a.value.equals(b.value)
}

function descEntry(e: ModelEntry): string {
  return `${e.lsn}:${e.type} key=${fmtBuf(e.key)} value=${fmtBuf(e.value)}`
}

// --- the interpreter -------------------------------------------------------------------

export interface RunResult {
  appended: number
  checkpoints: number
  replays: number
  reopens: number
}

/** skip: names of checks to leave out, to look past a known finding ('close-listing'). */
export async function runScenario(dir: string, cfg0: Config, ops: Op[], opts: { skip?: ReadonlySet<string> } = {}): Promise<RunResult> {
  const r = new Runner(dir, cfg0, opts.skip ?? new Set())
  try {
    await r.start()
    for (let i = 0; i < ops.length; i++) {
      r.opIndex = i
      r.trace(`#${i} ${JSON.stringify(ops[i])}`)
      await r.step(ops[i])
      r.afterStep()
    }
    r.opIndex = ops.length
    r.trace('#end: settle, close, reopen, check')
    await r.finish()
    return r.result
  } catch (err) {
    r.abort()
    if (err instanceof Finding) {
      err.message += `\n  at op #${r.opIndex} of ${ops.length}; config ${JSON.stringify(cfg0)}\n  trace (last 40):\n    ${r.traceLines.slice(-40).join('\n    ')}`
      throw err
    }
    const e = new Finding(
      `unexpected error at op #${r.opIndex} of ${ops.length}: ${(err as Error)?.stack ?? String(err)}\n  config ${JSON.stringify(cfg0)}\n  trace (last 40):\n    ${r.traceLines.slice(-40).join('\n    ')}`,
    )
    throw e
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

class Runner {
  wal!: WriteAheadLog
  cfg: Config
  opIndex = 0
  traceLines: string[] = []
  result: RunResult = { appended: 0, checkpoints: 0, replays: 0, reopens: 0 }

  private units: Unit[] = []
  private seq = 0 // event counter
  private cp = 0 // highest resolved checkpoint (the model's checkpointLsn)
  private cpRequested = 0 // highest checkpoint asked for (resolved or not)
  private pendingCps: { lsn: number; promise: Promise<unknown>; error?: unknown; done: boolean }[] = []
  private pendingSyncs: { promise: Promise<unknown>; error?: unknown; done: boolean }[] = []
  private seen: Seen[] = []
  private checkedOrderUpTo = 0 // units[0..n) verified in LSN order
  private maxLsn = 0 // highest LSN acknowledged over the whole run
  private abandoned: unknown[] = [] // iterators left without return(), kept reachable until close
  private firstLsnImplemented = false

  constructor(
    private readonly dir: string,
    cfg: Config,
    private readonly skip: ReadonlySet<string>,
  ) {
    this.cfg = { ...cfg }
  }

  trace(s: string): void {
    this.traceLines.push(s)
    if (this.traceLines.length > 400) this.traceLines.splice(0, 200)
  }

  fail(msg: string): never {
    throw new Finding(msg)
  }

  private options(c: Config) {
    return { backend: c.backend, sync: c.sync, syncIntervalMs: c.syncIntervalMs, preallocate: c.preallocate, segmentSize: c.segmentSize }
  }

  async start(): Promise<void> {
    this.wal = await WriteAheadLog.open(this.dir, this.options(this.cfg))
    this.firstLsnImplemented = typeof (this.wal as unknown as { firstLsn?: unknown }).firstLsn === 'number'
    this.checkFresh('after open')
  }

  abort(): void {
    try {
      this.wal?.closeSync()
    } catch {
      // best effort
    }
  }

  private get firstLsn(): number | undefined {
    return this.firstLsnImplemented ? (this.wal as unknown as { firstLsn: number }).firstLsn : undefined
  }

  // --- appends ---------------------------------------------------------------------------

  private newUnit(ops: InputOp[], batch: boolean, what: string): Unit {
    const u: Unit = { idx: this.units.length, ops, norm: ops.map(normalize), batch, what, predicted: 0 }
    this.units.push(u)
    return u
  }

  private ack(u: Unit, first: number, last: number): void {
    if (u.first !== undefined) this.fail(`unit #${u.idx} (${u.what}) acknowledged twice`)
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last)) this.fail(`unit #${u.idx} (${u.what}) returned non-integer LSNs ${first}..${last}`)
    if (last - first + 1 !== u.norm.length)
      this.fail(`unit #${u.idx} (${u.what}) of ${u.norm.length} ops got LSNs ${first}..${last}: a batch of n must get n consecutive LSNs`)
    u.first = first
    u.last = last
    u.ackSeq = ++this.seq
    if (last > this.maxLsn) this.maxLsn = last
    this.result.appended += u.norm.length
    if (last !== u.predicted) this.fail(`unit #${u.idx} (${u.what}) resolved with last LSN ${last}, but wal.lastLsn right after the call was ${u.predicted}`)
    if (u.always && u.wal!.durableLsn < last)
      this.fail(`sync 'always': unit #${u.idx} (${u.what}) acknowledged LSN ${last} while durableLsn is ${u.wal!.durableLsn}`)
  }

  private appendUnit(ops: InputOp[], batch: boolean, mode: Mode): Unit | Promise<unknown> {
    const what = `${batch ? `appendBatch[${ops.length}]` : ops[0].type === 'del' ? 'append(del)' : 'append'} ${mode}`
    const u = this.newUnit(ops, batch, what)
    const wal = this.wal
    u.wal = wal
    u.always = this.cfg.sync === 'always'
    if (mode === 'sync') {
      if (batch) {
        const r = wal.appendBatchSync(ops as never)
        u.predicted = wal.lastLsn
        this.ack(u, r.first, r.last)
      } else {
        const lsn = wal.appendSync(ops[0] as never)
        u.predicted = wal.lastLsn
        this.ack(u, lsn, lsn)
      }
      return u
    }
    const p: Promise<unknown> = batch ? wal.appendBatch(ops as never) : wal.append(ops[0] as never)
    u.predicted = wal.lastLsn
    u.promise = p.then(
      (v) => {
        try {
          if (batch) {
            const r = v as { first: number; last: number }
            this.ack(u, r.first, r.last)
          } else this.ack(u, v as number, v as number)
        } catch (err) {
          u.error = err
        }
      },
      (err) => {
        u.error = err
      },
    )
    return mode === 'await' ? u.promise.then(() => this.raiseUnit(u)) : u
  }

  private raiseUnit(u: Unit): void {
    if (u.error === undefined) return
    if (u.error instanceof Finding) throw u.error
    this.fail(`unit #${u.idx} (${u.what}) rejected: ${(u.error as Error)?.stack ?? String(u.error)}`)
  }

  // --- steps ---------------------------------------------------------------------------

  async step(op: Op): Promise<void> {
    switch (op.t) {
      case 'put': {
        const rand = prng(op.seed)
        const r = this.appendUnit([makeOp(rand, op.size, !!op.del, `u${this.units.length}:`)], false, op.mode)
        if (r instanceof Promise) await r
        return
      }
      case 'batch': {
        const rand = prng(op.seed)
        const n = Math.max(1, op.n)
        const ops: InputOp[] = []
        for (let i = 0; i < n; i++) ops.push(makeOp(rand, rand() % 4 === 0 ? op.size : rand() % (op.size + 1), rand() % 6 === 0, `u${this.units.length}.${i}:`))
        const r = this.appendUnit(ops, true, op.mode)
        if (r instanceof Promise) await r
        return
      }
      case 'fill': {
        const rand = prng(op.seed)
        for (let i = 0; i < op.n; i++) {
          this.appendUnit([makeOp(rand, op.size, rand() % 8 === 0, `u${this.units.length}:`)], false, op.mode === 'await' ? 'async' : op.mode)
          // 'await': one at a time, except every few, a small group in flight.
          if (op.mode === 'await' && i % 4 !== 3) {
            const u = this.units[this.units.length - 1]
            await u.promise
            this.raiseUnit(u)
          }
        }
        return
      }
      case 'settle':
        return this.settle(op.all, op.pick)
      case 'sync': {
        const wal = this.wal
        const lastAtCall = wal.lastLsn
        const unitsAtCall = this.units.length
        const s = { promise: undefined as unknown as Promise<unknown>, error: undefined as unknown, done: false }
        s.promise = wal.sync().then(
          () => {
            s.done = true
            if (wal.durableLsn < lastAtCall) s.error = new Finding(`sync() resolved but durableLsn ${wal.durableLsn} < lastLsn ${lastAtCall} at the call`)
            else if (this.units.length === unitsAtCall && wal.lastLsn === lastAtCall && wal.durableLsn !== wal.lastLsn)
              s.error = new Finding(`after sync() resolved: durableLsn ${wal.durableLsn} !== lastLsn ${wal.lastLsn}`)
          },
          (err) => {
            s.done = true
            s.error = err
          },
        )
        this.pendingSyncs.push(s)
        if (op.await) {
          await s.promise
          this.raiseOthers()
        }
        return
      }
      case 'checkpoint': {
        const lsn = Math.round(Math.min(1, Math.max(0, op.at)) * this.wal.lastLsn)
        this.startCheckpoint(lsn)
        if (op.await) {
          await this.pendingCps[this.pendingCps.length - 1].promise
          this.raiseOthers()
        }
        return
      }
      case 'consume':
        return this.consume(op.kind)
      case 'replay':
        return this.replay(op.kind, op.from)
      case 'mid':
        return this.mid(op)
      case 'reopen':
        return this.reopen(op)
    }
  }

  private startCheckpoint(lsn: number): Promise<unknown> {
    if (lsn > this.cpRequested) this.cpRequested = lsn
    this.result.checkpoints++
    const wal = this.wal
    const c = { lsn, promise: undefined as unknown as Promise<unknown>, error: undefined as unknown, done: false }
    c.promise = wal.checkpoint(lsn).then(
      () => {
        c.done = true
        if (lsn > this.cp) this.cp = lsn
        if (wal.checkpointLsn < lsn) c.error = new Finding(`checkpoint(${lsn}) resolved but checkpointLsn is ${wal.checkpointLsn}`)
      },
      (err) => {
        c.done = true
        c.error = err
      },
    )
    this.pendingCps.push(c)
    return c.promise
  }

  private raiseOthers(): void {
    for (const c of this.pendingCps) {
      if (c.error === undefined) continue
      if (c.error instanceof Finding) throw c.error
      this.fail(`checkpoint(${c.lsn}) rejected: ${(c.error as Error)?.stack ?? String(c.error)}`)
    }
    for (const s of this.pendingSyncs) {
      if (s.error === undefined) continue
      if (s.error instanceof Finding) throw s.error
      this.fail(`sync() rejected: ${(s.error as Error)?.stack ?? String(s.error)}`)
    }
    this.pendingCps = this.pendingCps.filter((c) => !c.done)
    this.pendingSyncs = this.pendingSyncs.filter((s) => !s.done)
    for (const u of this.units) if (u.error !== undefined) this.raiseUnit(u)
  }

  private async settle(all: boolean, pick: number): Promise<void> {
    if (all) {
      await Promise.all([...this.units.map((u) => u.promise), ...this.pendingCps.map((c) => c.promise), ...this.pendingSyncs.map((s) => s.promise)])
    } else {
      const pending = this.units.filter((u) => u.first === undefined && u.error === undefined && u.promise)
      if (pending.length > 0) await pending[Math.min(pending.length - 1, Math.floor(pick * pending.length))].promise
    }
    this.raiseOthers()
  }

  // --- replays ---------------------------------------------------------------------------

  /** Resolves a From to concrete replay arguments and what the result must satisfy. */
  private plan(kind: 'entries' | 'batches', from: From, label: string): { arg: { from: number } | undefined; seen: Seen; expectGone: boolean } {
    const wal = this.wal
    const cpPending = this.pendingCps.some((c) => !c.done)
    const firstLsn = this.firstLsn
    const reqLo = this.cpRequested + 1
    let f: number
    let arg: { from: number } | undefined
    let exactStart: boolean
    let expectGone = false
    let firstLsnAtStart: number | undefined
    if (from === 'default') {
      f = wal.checkpointLsn + 1
      arg = undefined
      if (!cpPending && wal.checkpointLsn !== this.cp) this.fail(`checkpointLsn is ${wal.checkpointLsn}, the model's highest resolved checkpoint is ${this.cp}`)
      exactStart = f >= reqLo
    } else if (from === 'zero') {
      f = 0
      arg = { from: 0 }
      exactStart = false
      if (firstLsn !== undefined && !cpPending) firstLsnAtStart = firstLsn
    } else {
      // With firstLsn known, from ranges over deleted LSNs too (those must throw WAL_GONE).
      const lo = firstLsn !== undefined && !cpPending ? 1 : reqLo
      const hi = wal.lastLsn + 1
      f = Math.max(1, Math.min(hi, lo + Math.floor(Math.max(0, Math.min(1, from)) * (hi - lo + 1))))
      arg = { from: f }
      if (firstLsn !== undefined && !cpPending && f < firstLsn) expectGone = true
      exactStart = f >= reqLo || (firstLsn !== undefined && !cpPending && f >= firstLsn)
    }
    const seen: Seen = { label, kind, from: f, exactStart, reqLo, startSeq: this.seq, unitsBefore: -1, complete: false, firstLsnAtStart, items: [] }
    return { arg, seen, expectGone }
  }

  private open(kind: Kind, arg: { from: number } | undefined): AsyncIterator<unknown> | Iterator<unknown> {
    if (kind === 'entries') return this.wal.replay(arg)
    if (kind === 'batches') return this.wal.replayBatches(arg)
    return this.wal.replaySync(arg)
  }

  private async pull(it: AsyncIterator<unknown> | Iterator<unknown>): Promise<IteratorResult<unknown>> {
    return await it.next()
  }

  private record(seen: Seen, v: unknown): void {
    // Keep the yielded objects themselves: their buffers must stay valid after iteration moves on.
    seen.items.push(v as Seen['items'][number])
  }

  private async expectGoneFrom(it: AsyncIterator<unknown> | Iterator<unknown>, seen: Seen): Promise<void> {
    try {
      const r = await this.pull(it)
      this.fail(`${seen.label}: from ${seen.from} < firstLsn ${this.firstLsn} must throw WAL_GONE; next() gave ${r.done ? 'done' : 'an item'}`)
    } catch (err) {
      if (err instanceof Finding) throw err
      if ((err as { code?: string }).code !== 'WAL_GONE') this.fail(`${seen.label}: from ${seen.from} < firstLsn must throw WAL_GONE, got ${(err as Error)?.stack}`)
    }
  }

  private async replay(kind: Kind, from: From): Promise<void> {
    const label = `replay#${this.result.replays++}(${kind}, from ${JSON.stringify(from)})`
    const { arg, seen, expectGone } = this.plan(kind === 'batches' ? 'batches' : 'entries', from, label)
    seen.label = `${label} → from ${arg?.from ?? 'default'}=${seen.from}`
    let it: AsyncIterator<unknown> | Iterator<unknown>
    try {
      it = this.open(kind, arg)
    } catch (err) {
      if (expectGone && (err as { code?: string }).code === 'WAL_GONE') return
      throw err
    }
    if (expectGone) return this.expectGoneFrom(it, seen)
    if (kind === 'sync') {
      for (let r = (it as Iterator<unknown>).next(); !r.done; r = (it as Iterator<unknown>).next()) this.record(seen, r.value)
    } else {
      for (let r = await this.pull(it); !r.done; r = await this.pull(it)) this.record(seen, r.value)
    }
    seen.complete = true
    seen.unitsBefore = this.units.length
    this.trace(`  ${seen.label}: ${seen.items.length} items`)
    this.seen.push(seen)
  }

  private async consume(kind: 'entries' | 'batches'): Promise<void> {
    const label = `consume#${this.result.replays++}(${kind}): checkpoint each item`
    const { seen } = this.plan(kind, 'default', label)
    const wal = this.wal
    if (kind === 'entries') {
      for await (const e of wal.replay()) {
        this.record(seen, e)
        if (e.lsn > this.cpRequested) this.cpRequested = e.lsn
        await wal.checkpoint(e.lsn)
        this.result.checkpoints++
        if (e.lsn > this.cp) this.cp = e.lsn
      }
    } else {
      for await (const b of wal.replayBatches()) {
        this.record(seen, b)
        if (b.last > this.cpRequested) this.cpRequested = b.last
        await wal.checkpoint(b.last)
        this.result.checkpoints++
        if (b.last > this.cp) this.cp = b.last
      }
    }
    seen.complete = true
    seen.unitsBefore = this.units.length
    this.trace(`  ${label}: ${seen.items.length} items, checkpointLsn now ${wal.checkpointLsn}, lastLsn ${wal.lastLsn}`)
    this.seen.push(seen)
    this.raiseOthers()
  }

  private async mid(op: Extract<Op, { t: 'mid' }>): Promise<void> {
    const label = `mid#${this.result.replays++}(${op.kind}, from ${JSON.stringify(op.from)}, take ${op.take}, then checkpoint, ${op.appends} appends, ${op.end})`
    const { arg, seen, expectGone } = this.plan(op.kind === 'batches' ? 'batches' : 'entries', op.from, label)
    seen.label = `${label} → from ${arg?.from ?? 'default'}=${seen.from}`
    if (expectGone) return this.expectGoneFrom(this.open(op.kind, arg), seen)
    const it = this.open(op.kind, arg)
    let done = false
    for (let i = 0; i < op.take && !done; i++) {
      const r = await this.pull(it)
      if (r.done) done = true
      else this.record(seen, r.value)
    }
    const lastItem = seen.items[seen.items.length - 1] as { lsn?: number; last?: number } | undefined
    const lsn = op.at < 0 ? (lastItem ? (lastItem.lsn ?? lastItem.last ?? 0) : 0) : Math.round(Math.min(1, op.at) * this.wal.lastLsn)
    this.trace(`  ${label}: took ${seen.items.length}${done ? ' (done)' : ''}, checkpoint(${lsn})`)
    await this.startCheckpoint(lsn)
    this.raiseOthers()
    const rand = prng(op.take * 7919 + op.appends * 104729 + 1)
    for (let i = 0; i < op.appends; i++) this.appendUnit([makeOp(rand, 24, false, `u${this.units.length}:`)], false, 'async')
    if (op.end === 'abandon') {
      this.abandoned.push(it)
      seen.unitsBefore = this.units.length
      this.seen.push(seen)
      return
    }
    if (op.end === 'return') {
      await it.return?.()
      seen.unitsBefore = this.units.length
      this.seen.push(seen)
      return
    }
    while (!done) {
      const r = await this.pull(it)
      if (r.done) done = true
      else this.record(seen, r.value)
    }
    seen.complete = true
    seen.unitsBefore = this.units.length
    this.trace(`  ${label}: ${seen.items.length} items in all`)
    this.seen.push(seen)
  }

  // --- reopen ----------------------------------------------------------------------------

  private async reopen(op: Extract<Op, { t: 'reopen' }>): Promise<void> {
    // Checkpoints and syncs in flight are awaited first (a checkpoint racing close is out of scope);
    // appends in flight are not: close must flush them.
    await Promise.all([...this.pendingCps.map((c) => c.promise), ...this.pendingSyncs.map((s) => s.promise)])
    this.raiseOthers()
    const wal = this.wal
    if (op.closeSync) wal.closeSync()
    else await wal.close()
    // A closed handle leaves the directory alone (its lock is released: the next writer owns it).
    const listing = () => fs.readdirSync(this.dir).filter((n) => n.endsWith('.wal')).sort().join(',')
    const atClose = listing()
    await Promise.all(this.units.map((u) => u.promise))
    for (const u of this.units) {
      this.raiseUnit(u)
      if (u.first === undefined) this.fail(`unit #${u.idx} (${u.what}) still pending after ${op.closeSync ? 'closeSync' : 'close'}()`)
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
    const later = listing()
    if (later !== atClose && !this.skip.has('close-listing')) this.fail(`segments changed after ${op.closeSync ? 'closeSync' : 'close'}() returned: [${atClose}] then [${later}]`)
    await wal.close() // idempotent
    try {
      wal.appendSync({ type: 'put', key: 'x', value: 'y' })
      this.fail('appendSync after close did not throw')
    } catch (err) {
      if (err instanceof Finding) throw err
      if ((err as { code?: string }).code !== 'WAL_CLOSED') this.fail(`appendSync after close: expected WAL_CLOSED, got ${(err as Error)?.stack}`)
    }
    this.abandoned = []
    this.cfg = { ...this.cfg, ...(op.change ?? {}) }
    this.wal = op.openSync ? WriteAheadLog.openSync(this.dir, this.options(this.cfg)) : await WriteAheadLog.open(this.dir, this.options(this.cfg))
    this.result.reopens++
    const w = this.wal
    this.trace(`  reopened (${w.backend}, ${this.cfg.sync}): lastLsn ${w.lastLsn} checkpointLsn ${w.checkpointLsn}${this.firstLsn !== undefined ? ` firstLsn ${this.firstLsn}` : ''}`)
    if (w.backend !== this.cfg.backend) this.fail(`opened with backend '${this.cfg.backend}', got wal.backend '${w.backend}'`)
    const rec = w.recovery
    if (rec.truncatedBytes !== 0 || rec.droppedEntries !== 0 || rec.droppedBatches !== 0)
      this.fail(`reopen after a clean close repaired something: ${JSON.stringify(rec)}`)
    this.checkFresh('after reopen')
  }

  /** After open/reopen with nothing pending: the log is exactly the model. */
  private checkFresh(when: string): void {
    const w = this.wal
    this.verifyOrder()
    if (w.lastLsn !== this.maxLsn) this.fail(`${when}: lastLsn ${w.lastLsn}, but the highest LSN ever acknowledged is ${this.maxLsn}`)
    if (w.checkpointLsn !== this.cp) this.fail(`${when}: checkpointLsn ${w.checkpointLsn}, but the highest checkpoint made is ${this.cp}`)
    if (w.durableLsn > w.lastLsn) this.fail(`${when}: durableLsn ${w.durableLsn} > lastLsn ${w.lastLsn}`)
    const first = this.firstLsn
    if (first !== undefined && (first < 1 || first > this.cp + 1)) this.fail(`${when}: firstLsn ${first} outside [1, checkpointLsn + 1 = ${this.cp + 1}]`)
    // Everything acknowledged above the checkpoint, exactly once, in order, batches whole.
    const got = [...w.replaySync()]
    const want = this.expectedEntries().filter((e) => e.lsn > this.cp)
    this.compareExact(`${when}: replaySync() (default from = checkpointLsn + 1 = ${this.cp + 1})`, got as ModelEntry[], want)
  }

  private expectedEntries(limit = this.units.length): ModelEntry[] {
    const out: ModelEntry[] = []
    for (const u of this.sortedUnits(limit)) u.norm.forEach((n, i) => out.push({ lsn: u.first! + i, ...n }))
    return out
  }

  private sortedUnits(limit = this.units.length): Unit[] {
    return this.units.slice(0, limit).sort((a, b) => a.first! - b.first!)
  }

  private compareExact(label: string, got: ModelEntry[], want: ModelEntry[]): void {
    const n = Math.max(got.length, want.length)
    for (let i = 0; i < n; i++) {
      const g = got[i]
      const e = want[i]
      if (g && e && sameEntry(g, e)) continue
      this.fail(
        `${label}: item ${i} differs: got ${g ? descEntry(g) : 'nothing'}, expected ${e ? descEntry(e) : 'nothing'} (got ${got.length} entries ${got[0]?.lsn ?? '-'}..${got[got.length - 1]?.lsn ?? '-'}, expected ${want.length} ${want[0]?.lsn ?? '-'}..${want[want.length - 1]?.lsn ?? '-'})`,
      )
    }
  }

  // --- invariants ------------------------------------------------------------------------

  /** LSNs strictly increase in call order over the whole run (reopens included): never reused. */
  private verifyOrder(): void {
    while (this.checkedOrderUpTo < this.units.length) {
      const u = this.units[this.checkedOrderUpTo]
      if (u.first === undefined) return
      const prev = this.checkedOrderUpTo > 0 ? this.units[this.checkedOrderUpTo - 1] : undefined
      if (prev && u.first <= prev.last!)
        this.fail(`LSN reused or out of call order: unit #${u.idx} (${u.what}) got ${u.first}..${u.last} after unit #${prev.idx} (${prev.what}) got ${prev.first}..${prev.last}`)
      if (u.first < 1) this.fail(`unit #${u.idx} got LSN ${u.first} < 1`)
      this.checkedOrderUpTo++
    }
  }

  afterStep(): void {
    this.raiseOthers()
    this.verifyOrder()
    const w = this.wal
    const pendingUnits = this.units.some((u) => u.first === undefined)
    if (w.durableLsn > w.lastLsn) this.fail(`durableLsn ${w.durableLsn} > lastLsn ${w.lastLsn}`)
    if (w.lastLsn < this.maxLsn) this.fail(`lastLsn ${w.lastLsn} went below an acknowledged LSN ${this.maxLsn}`)
    if (!pendingUnits) {
      if (w.lastLsn !== this.maxLsn) this.fail(`nothing pending, yet lastLsn ${w.lastLsn} !== latest LSN returned ${this.maxLsn}`)
      if (this.cfg.sync === 'always' && w.durableLsn !== w.lastLsn) this.fail(`sync 'always', every append resolved, yet durableLsn ${w.durableLsn} !== lastLsn ${w.lastLsn}`)
    }
    if (!this.pendingCps.some((c) => !c.done) && w.checkpointLsn !== this.cp) this.fail(`checkpointLsn ${w.checkpointLsn} !== highest resolved checkpoint ${this.cp}`)
    const first = this.firstLsn
    if (first !== undefined && (first < 1 || first > w.lastLsn + 1 || (!this.pendingCps.some((c) => !c.done) && first > this.cp + 1)))
      this.fail(`firstLsn ${first} outside [1, min(checkpointLsn + 1, lastLsn + 1)] (checkpointLsn ${this.cp}, lastLsn ${w.lastLsn})`)
    this.checkSeen(false)
  }

  /** Verifies the replays whose units have all settled (all of them when `final`). */
  private checkSeen(final: boolean): void {
    const rest: Seen[] = []
    for (const s of this.seen) {
      const ready = this.units.slice(0, s.unitsBefore).every((u) => u.first !== undefined)
      if (!ready) {
        if (final) this.fail(`${s.label}: units still unsettled at the end`)
        rest.push(s)
        continue
      }
      this.verifySeen(s)
    }
    this.seen = rest
  }

  private verifySeen(s: Seen): void {
    const units = this.sortedUnits(s.unitsBefore)
    type Item = { lo: number; hi: number; acked: boolean; match(v: unknown): string | undefined; desc: string }
    const expected: Item[] = []
    const entryItem = (u: Unit, i: number): Item => {
      const e: ModelEntry = { lsn: u.first! + i, ...u.norm[i] }
      return {
        lo: e.lsn,
        hi: e.lsn,
        acked: u.ackSeq! <= s.startSeq,
        desc: descEntry(e),
        match: (v) => (v && typeof v === 'object' && sameEntry(v as ModelEntry, e) ? undefined : `got ${v && typeof v === 'object' && 'lsn' in v ? descEntry(v as ModelEntry) : JSON.stringify(v)}`),
      }
    }
    for (const u of units) {
      if (s.kind === 'entries') {
        for (let i = 0; i < u.norm.length; i++) if (u.first! + i >= s.from) expected.push(entryItem(u, i))
      } else if (u.last! >= s.from) {
        const entries = u.norm.map((_, i) => entryItem(u, i))
        expected.push({
          lo: u.first!,
          hi: u.last!,
          acked: u.ackSeq! <= s.startSeq,
          desc: `batch ${u.first}..${u.last} (${u.what})`,
          match: (v) => {
            const b = v as { first: number; last: number; entries: unknown[] }
            if (!b || b.first !== u.first || b.last !== u.last || !Array.isArray(b.entries) || b.entries.length !== entries.length)
              return `got batch ${b?.first}..${b?.last} with ${b?.entries?.length} entries`
            for (let i = 0; i < entries.length; i++) {
              const m = entries[i].match(b.entries[i])
              if (m) return `entry ${i}: ${m}, expected ${entries[i].desc}`
            }
            return undefined
          },
        })
      }
    }
    const items = s.items
    const itemLo = (v: unknown) => (s.kind === 'entries' ? (v as ModelEntry).lsn : (v as { first: number }).first)
    const summary = () => {
      const lsns = items.map(itemLo)
      const short = lsns.length > 30 ? `${lsns.slice(0, 12).join(',')},…,${lsns.slice(-12).join(',')}` : lsns.join(',')
      const exp = expected.map((e) => e.lo)
      const shortExp = exp.length > 30 ? `${exp.slice(0, 12).join(',')},…,${exp.slice(-12).join(',')}` : exp.join(',')
      return `\n    yielded (${lsns.length}): [${short}]\n    model   (${exp.length}): [${shortExp}]\n    checkpointLsn ${this.cp}, required from ${s.reqLo}`
    }
    let start = 0
    if (items.length > 0) {
      const lo0 = itemLo(items[0])
      start = expected.findIndex((e) => e.lo === lo0)
      if (start < 0) this.fail(`${s.label}: yielded ${s.kind === 'entries' ? descEntry(items[0] as ModelEntry) : `batch ${lo0}..`} that the model never appended at or after from${summary()}`)
      if (s.exactStart && start !== 0) this.fail(`${s.label}: skipped ${expected[0].desc}: the first item yielded starts at ${lo0}${summary()}`)
      if (start > 0 && expected[start - 1].hi >= s.reqLo)
        this.fail(`${s.label}: started at ${lo0}, skipping ${expected[start - 1].desc} which is above the checkpoint${summary()}`)
      if (s.firstLsnAtStart !== undefined && lo0 !== s.firstLsnAtStart && !(s.kind === 'batches' && expected[start].lo <= s.firstLsnAtStart && expected[start].hi >= s.firstLsnAtStart))
        this.fail(`${s.label}: { from: 0 } started at ${lo0}, but firstLsn was ${s.firstLsnAtStart}${summary()}`)
    } else if (s.firstLsnAtStart !== undefined && s.complete && expected.some((e) => e.acked && e.hi >= s.firstLsnAtStart!)) {
      this.fail(`${s.label}: { from: 0 } yielded nothing though firstLsn was ${s.firstLsnAtStart}${summary()}`)
    }
    for (let i = 0; i < items.length; i++) {
      const e = expected[start + i]
      if (!e) this.fail(`${s.label}: item ${i} (${itemLo(items[i])}) is past everything the model appended, or a duplicate${summary()}`)
      const m = e.match(items[i])
      if (m) this.fail(`${s.label}: item ${i} should be ${e.desc}: ${m}${summary()}`)
    }
    if (s.complete) {
      for (let j = start + items.length; j < expected.length; j++) {
        const e = expected[j]
        if (e.acked && e.hi >= s.reqLo) this.fail(`${s.label}: ended without yielding ${e.desc}, acknowledged before the replay began${summary()}`)
      }
      if (items.length === 0) {
        const miss = expected.find((e) => e.acked && e.hi >= s.reqLo)
        if (miss) this.fail(`${s.label}: yielded nothing, missing ${miss.desc}${summary()}`)
      }
    }
  }

  // --- the end -------------------------------------------------------------------------

  async finish(): Promise<void> {
    await this.settle(true, 0)
    this.afterStep()
    this.checkSeen(true)
    await this.reopen({ t: 'reopen', closeSync: false, openSync: false })
    this.checkSeen(true)
    await this.wal.close()
  }
}
