// decodeBatch: a shipped batch's body (its records exactly as on disk: one PUT/DEL, or
// BEGIN, the members and COMMIT) back into a Batch. Every record's CRC32C and the batch
// rules are checked by the same scanner and record cursor that replay uses; anything
// else (a bad checksum, bytes left over, a batch without its COMMIT, two batches) is
// WAL_CORRUPT, with `offset` the byte offset in the body.
import { isUint8Array } from './bytes.js'
import { WalError } from './errors.js'
import { IX_LSN, IX_POS, SCAN_END } from './format.js'
import { jsBackend } from './js-backend.js'
import { loadAddon } from './native-addon.js'
import { RecordCursor, type CursorOutput } from './record-cursor.js'
import type { Batch } from './replay.js'

const addon = loadAddon().addon

function corrupt(offset: number, what: string): WalError {
  return new WalError('WAL_CORRUPT', `decodeBatch: ${what} at byte offset ${offset} of the message body. The body is not a whole fastwal batch; do not apply it.`, { segment: '(message body)', offset })
}

/**
 * A shipped batch's message body (its records exactly as on disk) back into a Batch;
 * every record's checksum and the batch rules are checked. Anything else is WAL_CORRUPT.
 *
 * @example
 * ```ts
 * for await (const msg of consumer) {
 *   const batch = decodeBatch(msg.data)
 *   for (const e of batch.entries) apply(e)
 *   msg.ack()
 * }
 * ```
 */
export function decodeBatch(bytes: Uint8Array): Batch {
  if (!isUint8Array(bytes)) throw new WalError('WAL_INVALID', 'decodeBatch(bytes): bytes must be a Uint8Array or Buffer (a message body).')
  // A private copy: the entries' key and value Buffers are views of it.
  const buf = Buffer.from(bytes)
  const r = addon ? addon.scan(buf, 0, buf.length) : undefined
  const scan = r ? { status: r[1], stop: r[2], index: r[4] } : jsBackend.scan(buf, 0, buf.length)
  if (scan.status !== SCAN_END) throw corrupt(scan.stop, 'Invalid or incomplete record (checksum or header mismatch)')
  if (scan.index.length === 0) throw corrupt(0, 'No record')
  const out: CursorOutput = { from: 0, asBatches: true, items: [] }
  const first = scan.index[IX_LSN]
  const cursor = new RecordCursor(Math.max(0, first - 1), 0, 0, out)
  const stale = cursor.consume(buf, scan.index, 0)
  if (stale >= 0) throw corrupt(scan.index[stale + IX_POS], 'Record with an LSN out of order')
  if (out.items.length !== 1 || cursor.batchStart >= 0 || cursor.orphans > 0)
    throw corrupt(cursor.batchStart >= 0 ? cursor.batchStart : 0, out.items.length > 1 ? 'More than one batch' : 'Not exactly one committed batch (a BEGIN without its COMMIT, or a COMMIT that does not match)')
  return out.items[0] as unknown as Batch
}
