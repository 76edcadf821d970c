// The record cursor: the one place that applies the log's rules to records in file order.
//
// LSN order: a standalone PUT/DEL and a BEGIN take a new, higher LSN; batch members and
// COMMIT repeat or continue their BEGIN's; a CHECKPOINT carries the current last LSN. A
// valid record that breaks this is a stale copy of older data, and reading stops there.
//
// Batches: BEGIN (aux = count) opens one; members must follow at consecutive LSNs; COMMIT
// must name the BEGIN's LSN and count and carry the last member's LSN. Only then are the
// members yielded. A standalone record, a CHECKPOINT, a member out of sequence or a
// COMMIT that does not match discards the open batch (an orphan). A batch never reaches
// a reader without its COMMIT.
//
// Recovery, replay, follow and verify all read through this; recovery uses the positions
// (where the last complete record ends, where an open batch began), replay the output.
import {
  FLAG_BATCH,
  IX_AUX,
  IX_LENGTH,
  IX_LSN,
  IX_MARK,
  IX_POS,
  IX_STRIDE,
  RECORD_HEADER_SIZE,
  TYPE_BEGIN,
  TYPE_CHECKPOINT,
  TYPE_COMMIT,
  TYPE_DEL,
  TYPE_PUT,
  flagsAt,
  readU64,
  typeAt,
} from './format.js'

export interface Entry {
  lsn: number
  type: 'put' | 'del'
  key: Buffer
  value: Buffer | undefined
}

export interface Batch {
  first: number
  last: number
  entries: Entry[]
}

/** Whether a record with these fields may follow one whose LSN field was `lastSeen`. */
function lsnInOrder(type: number, flags: number, lsn: number, lastSeen: number): boolean {
  if (type === TYPE_CHECKPOINT || type === TYPE_COMMIT || flags & FLAG_BATCH) return lsn >= lastSeen
  return lsn > lastSeen
}

/** What the cursor emits, if anything: entries (flattened) or whole batches. */
/** A batch as its records' bytes on disk (BEGIN to COMMIT, or the one record); `entries` is left empty for a batch (decodeBatch(bytes) gives them). */
export interface RawBatch extends Batch {
  bytes: Buffer
}

export interface CursorOutput {
  /** With asBatches: each batch also carries its records' bytes (RawBatch). */
  raw?: boolean
  /** Entries or batches with an LSN below this are consumed but not emitted. */
  from: number
  asBatches: boolean
  items: (Entry | Batch)[]
}

export class RecordCursor {
  /** File offset where the last consumed record ends (the segment's start before any). */
  end: number
  /** LSN field of the last consumed record. */
  lastSeen: number
  /** LSN up to which the records are complete: the last standalone record, COMMIT, or CHECKPOINT outside a batch. */
  keptLsn: number
  /** Highest LSN field seen. */
  maxLsn: number
  /** Highest durable mark seen: every LSN up to it was synced before this record was written. */
  maxMark = 0
  /** Highest checkpoint LSN seen in a segment header or CHECKPOINT record. */
  checkpointLsn: number
  /** File offset of the BEGIN of a batch not yet closed by a COMMIT or a standalone record, or -1. */
  batchStart = -1
  /** keptLsn before that batch began. */
  lsnBeforeBatch = 0
  /** Batches discarded without a matching COMMIT. */
  orphans = 0
  /** Records with an LSN field above this are not consumed yet: a follower yields only what is durable. */
  lsnLimit = Infinity
  /** Why consume() last returned a row: a record out of LSN order, or one above lsnLimit. */
  stoppedBy: 'stale' | 'limit' | undefined

  private open: Entry[] | undefined // members of the open batch while it is still valid
  // With output.raw: the open batch's bytes, as runs of whole records per chunk buffer.
  private rawParts: Buffer[] = []
  private rawBuf: Buffer | undefined
  private rawStart = 0
  private rawEnd = 0
  private first = 0
  private count = 0

  constructor(
    prevLsn: number,
    checkpointLsn: number,
    start: number,
    private readonly output?: CursorOutput,
  ) {
    this.end = start
    this.lastSeen = prevLsn
    this.keptLsn = prevLsn
    this.maxLsn = prevLsn
    this.checkpointLsn = checkpointLsn
  }

  /** The next segment begins at `start`; the LSN order and any open batch carry on. */
  enterSegment(start: number, checkpointLsn: number): void {
    this.end = start
    if (checkpointLsn > this.checkpointLsn) this.checkpointLsn = checkpointLsn
  }

  /**
   * Consumes index rows [from, to) of a scan of `buf`, which starts at file offset `base`.
   * Returns -1, or the row where it stopped (see stoppedBy); nothing from that row on is consumed.
   */
  consume(buf: Buffer, ix: Float64Array, base: number, from = 0, to = ix.length): number {
    const out = this.output
    for (let i = from; i < to; i += IX_STRIDE) {
      const type = typeAt(ix, i)
      const flags = flagsAt(ix, i)
      const lsn = ix[i + IX_LSN]
      if (!lsnInOrder(type, flags, lsn, this.lastSeen)) {
        this.stoppedBy = 'stale'
        return i
      }
      if (lsn > this.lsnLimit) {
        this.stoppedBy = 'limit'
        return i
      }
      this.lastSeen = lsn
      if (lsn > this.maxLsn) this.maxLsn = lsn
      if (ix[i + IX_MARK] > this.maxMark) this.maxMark = ix[i + IX_MARK]
      const at = ix[i + IX_POS]
      if (type === TYPE_PUT || type === TYPE_DEL) {
        if (flags & FLAG_BATCH) {
          const open = this.open
          if (open && lsn === this.first + open.length && open.length < this.count) {
            if (out?.raw) {
              // A shipper needs the bytes, not entries: count the member only.
              open.length++
              this.rawRecord(buf, ix, i)
            } else if (out) open.push(entryAt(buf, ix, i, type, lsn))
            else open.length++
          } else this.discard()
        } else {
          this.discard()
          this.batchStart = -1
          this.keptLsn = lsn
          if (out && lsn >= out.from) {
            const e = entryAt(buf, ix, i, type, lsn)
            if (!out.asBatches) out.items.push(e)
            else if (out.raw) out.items.push({ first: lsn, last: lsn, entries: [e], bytes: recordAt(buf, ix, i) } as RawBatch)
            else out.items.push({ first: lsn, last: lsn, entries: [e] })
          }
        }
      } else if (type === TYPE_BEGIN) {
        this.discard()
        if (this.batchStart < 0) this.lsnBeforeBatch = this.keptLsn
        this.batchStart = base + at
        this.open = []
        if (out?.raw) {
          this.rawParts = []
          this.rawBuf = undefined
          this.rawRecord(buf, ix, i)
        }
        this.first = lsn
        this.count = ix[i + IX_AUX]
      } else if (type === TYPE_COMMIT) {
        const open = this.open
        this.open = undefined
        this.batchStart = -1
        this.keptLsn = lsn
        const beginLsn = readU64(buf, at + RECORD_HEADER_SIZE)
        if (open && beginLsn === this.first && ix[i + IX_AUX] === this.count && open.length === this.count && lsn === this.first + this.count - 1) {
          if (out && lsn >= out.from) {
            if (out.raw) {
              this.rawRecord(buf, ix, i)
              this.rawParts.push(this.rawBuf!.subarray(this.rawStart, this.rawEnd))
              out.items.push({ first: this.first, last: lsn, entries: [], bytes: this.rawParts.length === 1 ? this.rawParts[0] : Buffer.concat(this.rawParts) } as RawBatch)
              this.rawParts = []
              this.rawBuf = undefined
            } else if (out.asBatches) out.items.push({ first: this.first, last: lsn, entries: open })
            else for (const e of open) if (e.lsn >= out.from) out.items.push(e)
          }
        } else if (open) this.orphans++ // (a batch already discarded was counted then)
      } else if (type === TYPE_CHECKPOINT) {
        // The writer never puts one inside a batch: one there discards the batch.
        this.discard()
        const cp = readU64(buf, at + RECORD_HEADER_SIZE)
        if (cp > this.checkpointLsn) this.checkpointLsn = cp
        if (this.batchStart < 0 && lsn > this.keptLsn) this.keptLsn = lsn
      }
      this.end = base + at + RECORD_HEADER_SIZE + ix[i + IX_LENGTH]
    }
    return -1
  }

  /** Adds record row `i` to the open batch's bytes (a new run when the chunk buffer changes). */
  private rawRecord(buf: Buffer, ix: Float64Array, i: number): void {
    const at = ix[i + IX_POS]
    if (this.rawBuf !== buf) {
      if (this.rawBuf) this.rawParts.push(this.rawBuf.subarray(this.rawStart, this.rawEnd))
      this.rawBuf = buf
      this.rawStart = at
    }
    this.rawEnd = at + RECORD_HEADER_SIZE + ix[i + IX_LENGTH]
  }

  private discard(): void {
    if (this.open) {
      this.open = undefined
      this.orphans++
    }
  }
}

/** The bytes of the record of index row `i`. */
function recordAt(buf: Buffer, ix: Float64Array, i: number): Buffer {
  const at = ix[i + IX_POS]
  return buf.subarray(at, at + RECORD_HEADER_SIZE + ix[i + IX_LENGTH])
}

function entryAt(buf: Buffer, ix: Float64Array, i: number, type: number, lsn: number): Entry {
  const p = ix[i + IX_POS] + RECORD_HEADER_SIZE
  const klen = ix[i + IX_AUX]
  return {
    lsn,
    type: type === TYPE_PUT ? 'put' : 'del',
    key: buf.subarray(p, p + klen),
    value: type === TYPE_PUT ? buf.subarray(p + klen, p + ix[i + IX_LENGTH]) : undefined,
  }
}

/** What a run of records that recovery drops held. */
export interface DroppedRecords {
  droppedEntries: number // PUT and DEL records
  droppedBatches: number // BEGIN records
  maxLsn: number
  /** Highest durable mark among them: LSNs up to it were synced before they were written. */
  maxMark: number
}

export function noneDropped(): DroppedRecords {
  return { droppedEntries: 0, droppedBatches: 0, maxLsn: 0, maxMark: 0 }
}

/** Adds index rows [from, to) to `into`. */
export function countDropped(ix: Float64Array, into: DroppedRecords, from = 0, to = ix.length): void {
  for (let i = from; i < to; i += IX_STRIDE) {
    const type = typeAt(ix, i)
    if (ix[i + IX_LSN] > into.maxLsn) into.maxLsn = ix[i + IX_LSN]
    if (ix[i + IX_MARK] > into.maxMark) into.maxMark = ix[i + IX_MARK]
    if (type === TYPE_PUT || type === TYPE_DEL) into.droppedEntries++
    else if (type === TYPE_BEGIN) into.droppedBatches++
  }
}
