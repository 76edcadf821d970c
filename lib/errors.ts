import { getSystemErrorName } from 'node:util'

/**
 * What kind of failure a {@link WalError} is: bad input (`WAL_INVALID`, `WAL_TOO_LARGE`),
 * a handle's state (`WAL_CLOSED`, `WAL_READ_ONLY`, `WAL_LOCKED`, `WAL_FAILED`), the log's
 * contents (`WAL_GONE`, `WAL_CORRUPT`) or the system (`WAL_IO`).
 *
 * @example
 * ```ts
 * const retryable = (code: WalErrorCode) => code === 'WAL_LOCKED'
 * ```
 */
export type WalErrorCode =
  | 'WAL_INVALID'
  | 'WAL_TOO_LARGE'
  | 'WAL_CLOSED'
  | 'WAL_READ_ONLY'
  | 'WAL_LOCKED'
  | 'WAL_GONE'
  | 'WAL_CORRUPT'
  | 'WAL_IO'
  | 'WAL_FAILED'

/**
 * The optional fields a {@link WalError} carries.
 *
 * @example
 * ```ts
 * new WalError('WAL_CORRUPT', 'bad record', { segment: '00000000000000000001.wal', offset: 4096 })
 * ```
 */
export interface WalErrorDetails {
  /** The segment file involved. */
  segment?: string
  /** A byte offset in it. */
  offset?: number
  /** The system call that failed. */
  syscall?: string
  /** The file involved. */
  path?: string
  /** The lowest LSN the log still holds. */
  firstLsn?: number
  /** The underlying error. */
  cause?: unknown
}

/**
 * Every error fastwal raises on purpose. `code` says which kind; the message names the
 * file, offset or option at fault and what to do next.
 *
 * @example
 * ```ts
 * try {
 *   await wal.append(op)
 * } catch (err) {
 *   if (err instanceof WalError && err.code === 'WAL_IO') console.error(err.syscall, err.path)
 *   throw err
 * }
 * ```
 */
export class WalError extends Error {
  /** Which kind of failure. */
  readonly code: WalErrorCode
  /** WAL_CORRUPT: the segment file name. */
  segment?: string
  /** WAL_CORRUPT: a byte offset inside the damaged record. */
  offset?: number
  /** WAL_IO: the system call that failed, e.g. 'fdatasync'. */
  syscall?: string
  /** WAL_IO and WAL_LOCKED: the file involved. */
  path?: string
  /** WAL_GONE: the lowest LSN the log still holds. */
  firstLsn?: number

  /** Made by fastwal; exported so callers can test `instanceof WalError`. */
  constructor(code: WalErrorCode, message: string, details: WalErrorDetails = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined)
    this.name = 'WalError'
    this.code = code
    if (details.segment !== undefined) this.segment = details.segment
    if (details.offset !== undefined) this.offset = details.offset
    if (details.syscall !== undefined) this.syscall = details.syscall
    if (details.path !== undefined) this.path = details.path
    if (details.firstLsn !== undefined) this.firstLsn = details.firstLsn
  }
}

/** A system error as Node reports them: `code` is the OS name ('ENOSPC'). */
export interface SystemError extends Error {
  code?: string
  errno?: number
  syscall?: string
}

/** Gives an error from either backend the shape of a Node system error. */
export function toSystemError(err: unknown): SystemError {
  const e = (err instanceof Error ? err : new Error(String(err))) as SystemError
  if (e.code === undefined && typeof e.errno === 'number') {
    try {
      e.code = getSystemErrorName(e.errno)
    } catch {
      e.code = 'EIO'
    }
  }
  return e
}

/** What a caller can do after a failed step; every I/O error names one. */
export const HINT = {
  /** The writer is poisoned: appends give WAL_FAILED from now on. */
  write: 'The log refuses further appends; close it, fix the cause (disk space, permissions, hardware) and reopen: recovery keeps every acknowledged record.',
  /** Open failed before anything was changed, or with a repair left to redo. */
  open: 'Fix the cause (path, permissions, disk space) and open again; an interrupted repair is finished by the next open.',
  /** A read failed; the log itself is unchanged and appends go on. */
  read: 'The log was not changed; fix the cause (permissions, hardware, a file put there by something else) and read again.',
  /** Deleting checkpointed segments failed; the checkpoint itself is durable. */
  checkpoint: 'The checkpoint record is durable; the segments it frees stay on disk until a later checkpoint deletes them. Fix the cause (permissions, hardware).',
  /** A cursor could not be written or read. */
  cursor: 'The cursor keeps its previous position and the log is unchanged; fix the cause (disk space, permissions) and confirm again.',
  /** The lock could not be taken or released. */
  lock: 'Nothing was changed; check the permissions of the directory and its LOCK file.',
} as const

export type Hint = keyof typeof HINT

export function ioError(err: unknown, what: string, path: string, hint: Hint): WalError {
  if (err instanceof WalError) return err
  const cause = toSystemError(err)
  const syscall = cause.syscall ?? 'unknown'
  return new WalError('WAL_IO', `${what} failed on ${path}: ${syscall} ${cause.code ?? ''} (${cause.message}). ${HINT[hint]}`, {
    syscall,
    path,
    cause,
  })
}
