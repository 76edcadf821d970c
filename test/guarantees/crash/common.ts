// Shared helpers of the crash-safety tests, also used by the property tests, codec.test.ts
// and lock.test.ts (not a test file itself).
import * as fs from 'node:fs'
import { join } from 'node:path'
import * as assert from 'uvu/assert'
import { WalError, WriteAheadLog } from '../../../lib/index.js'
import type { Operation } from '../../../lib/options.js'
import { prng, randomBytes, segmentFiles } from '../../helpers/util.js'

export const HEADER = 32 // segment header and record header are both 32 bytes

/** One unit of commitment: a standalone append or a whole batch. */
export interface Unit {
  kind: 'one' | 'batch'
  ops: Operation[]
  first: number
  last: number
  /** Where its bytes are on disk (filled by writeUnits). */
  seg: string
  start: number
  end: number
}

/** A replayed or expected batch in a form assert.equal diffs readably. */
export interface PlainBatch {
  first: number
  last: number
  entries: { lsn: number; type: 'put' | 'del'; key: string; value: string | undefined }[]
}

export function hex(b: Uint8Array | string): string {
  return (typeof b === 'string' ? Buffer.from(b, 'utf8') : Buffer.from(b.buffer, b.byteOffset, b.byteLength)).toString('hex')
}

export function opBytes(op: Operation): number {
  const k = typeof op.key === 'string' ? Buffer.byteLength(op.key) : op.key.length
  if (op.type === 'del') return HEADER + k
  const v = typeof op.value === 'string' ? Buffer.byteLength(op.value) : op.value.length
  return HEADER + k + v
}

/** Bytes a unit takes on disk: one record, or BEGIN + records + COMMIT (8-byte payload). */
export function unitBytes(kind: 'one' | 'batch', ops: Operation[]): number {
  const body = ops.reduce((s, op) => s + opBytes(op), 0)
  return kind === 'one' ? body : HEADER + body + HEADER + 8
}

export function plainUnit(u: Pick<Unit, 'first' | 'last' | 'ops'>): PlainBatch {
  return {
    first: u.first,
    last: u.last,
    entries: u.ops.map((op, i) => ({
      lsn: u.first + i,
      type: op.type,
      key: hex(op.key),
      value: op.type === 'put' ? hex(op.value) : undefined,
    })),
  }
}

export function plainBatch(b: { first: number; last: number; entries: { lsn: number; type: 'put' | 'del'; key: Buffer; value: Buffer | undefined }[] }): PlainBatch {
  return {
    first: b.first,
    last: b.last,
    entries: b.entries.map((e) => ({ lsn: e.lsn, type: e.type, key: hex(e.key), value: e.value === undefined ? undefined : hex(e.value) })),
  }
}

export async function replayAll(wal: WriteAheadLog): Promise<PlainBatch[]> {
  const out: PlainBatch[] = []
  for await (const b of wal.replayBatches({ from: 0 })) out.push(plainBatch(b))
  return out
}

/** Every entry replaySync yields, from LSN 0. */
export function replaySyncEntries(wal: WriteAheadLog): PlainBatch['entries'] {
  const out: PlainBatch['entries'] = []
  for (const e of wal.replaySync({ from: 0 })) out.push({ lsn: e.lsn, type: e.type, key: hex(e.key), value: e.value === undefined ? undefined : hex(e.value) })
  return out
}

export function entriesOf(batches: PlainBatch[]): PlainBatch['entries'] {
  return batches.flatMap((b) => b.entries)
}

/** A deterministic random mix of standalone appends and batches, keys and values of varied size. */
export function randomUnits(seed: number, count: number, maxValue = 60): { kind: 'one' | 'batch'; ops: Operation[] }[] {
  const rand = prng(seed)
  const units: { kind: 'one' | 'batch'; ops: Operation[] }[] = []
  for (let u = 0; u < count; u++) {
    const kind = rand() % 3 === 0 ? 'batch' : 'one'
    const n = kind === 'batch' ? 1 + (rand() % 4) : 1
    const ops: Operation[] = []
    for (let i = 0; i < n; i++) {
      const key = rand() % 2 ? `key-${u}-${i}` : randomBytes(rand, rand() % 12)
      if (rand() % 5 === 0) ops.push({ type: 'del', key })
      else ops.push({ type: 'put', key, value: rand() % 2 ? randomBytes(rand, rand() % maxValue) : 'v'.repeat(rand() % maxValue) })
    }
    units.push({ kind, ops })
  }
  return units
}

/**
 * Appends the units one at a time (each awaited, so each is written and synced before the
 * next), recording where each landed. Needs preallocate: false so file sizes are offsets.
 */
export async function writeUnits(
  wal: WriteAheadLog,
  dir: string,
  specs: { kind: 'one' | 'batch'; ops: Operation[] }[],
  opts: { useSync?: (i: number) => boolean; until?: (units: Unit[]) => boolean } = {},
): Promise<Unit[]> {
  const units: Unit[] = []
  for (const [idx, s] of specs.entries()) {
    if (opts.until?.(units)) break
    const useSync = opts.useSync?.(idx) ?? false
    let first: number
    let last: number
    if (s.kind === 'one') {
      first = last = useSync ? wal.appendSync(s.ops[0]) : await wal.append(s.ops[0])
    } else {
      ;({ first, last } = useSync ? wal.appendBatchSync(s.ops) : await wal.appendBatch(s.ops))
    }
    const segs = segmentFiles(dir)
    const seg = segs[segs.length - 1]
    const end = fs.statSync(join(dir, seg)).size
    const size = unitBytes(s.kind, s.ops)
    const start = end - size
    const prev = units[units.length - 1]
    if (prev && prev.seg === seg) assert.is(start, prev.end, `unit ${first}: follows the previous record exactly (no padding)`)
    else assert.is(start, HEADER, `unit ${first}: first record of ${seg} starts after the header`)
    assert.is(last - first + 1, s.ops.length)
    if (prev) assert.is(first, prev.last + 1, 'LSNs are consecutive')
    units.push({ ...s, first, last, seg, start, end })
  }
  return units
}

export function copyDir(src: string, dst: string): void {
  fs.mkdirSync(dst, { recursive: true })
  for (const n of fs.readdirSync(src)) if (n !== 'LOCK') fs.copyFileSync(join(src, n), join(dst, n))
}

/** Every segment file's bytes, by name. */
export function snapshot(dir: string): Map<string, Buffer> {
  const m = new Map<string, Buffer>()
  for (const n of segmentFiles(dir)) m.set(n, fs.readFileSync(join(dir, n)))
  return m
}

export function assertSameFiles(before: Map<string, Buffer>, after: Map<string, Buffer>, msg: string): void {
  assert.equal([...after.keys()], [...before.keys()], `${msg}: same segment files`)
  for (const [n, b] of before) assert.ok(b.equals(after.get(n)!), `${msg}: ${n} byte-identical`)
}

export async function expectWalError(p: Promise<unknown> | (() => unknown), code: string, msg: string): Promise<WalError> {
  try {
    if (typeof p === 'function') await p()
    else await p
  } catch (err) {
    assert.instance(err, WalError, `${msg}: a WalError (got ${String(err)})`)
    assert.is((err as WalError).code, code, `${msg}: code (message: ${(err as Error).message})`)
    return err as WalError
  }
  assert.unreachable(`${msg}: expected ${code}`)
  throw new Error('unreachable')
}

/** Last non-zero byte + 1 in buf[from, to), or `from`. */
export function lastNonZero(buf: Buffer, from: number, to = buf.length): number {
  for (let i = to - 1; i >= from; i--) if (buf[i] !== 0) return i + 1
  return from
}

/** Byte ranges [start, end) of each record of a unit: BEGIN, ops, COMMIT for a batch. */
export function recordRanges(u: Unit): [number, number][] {
  if (u.kind === 'one') return [[u.start, u.end]]
  const out: [number, number][] = [[u.start, u.start + HEADER]]
  let p = u.start + HEADER
  for (const op of u.ops) {
    const e = p + opBytes(op)
    out.push([p, e])
    p = e
  }
  out.push([p, p + HEADER + 8])
  if (p + HEADER + 8 !== u.end) throw new Error('recordRanges: sizes do not add up')
  return out
}
