import { getSystemErrorName } from 'node:util'

export type WalErrorCode =
  | 'WAL_INVALID'
  | 'WAL_TOO_LARGE'
  | 'WAL_CLOSED'
  | 'WAL_READ_ONLY'
  | 'WAL_LOCKED'
  | 'WAL_CORRUPT'
  | 'WAL_IO'
  | 'WAL_FAILED'

export interface WalErrorDetails {
  segment?: string
  offset?: number
  syscall?: string
  path?: string
  cause?: unknown
}

/** Every error fastwal raises on purpose. `code` says which kind; see SPEC §4. */
export class WalError extends Error {
  readonly code: WalErrorCode
  /** WAL_CORRUPT: the segment file name. */
  segment?: string
  /** WAL_CORRUPT: a byte offset inside the damaged record. */
  offset?: number
  /** WAL_IO: the system call that failed, e.g. 'fdatasync'. */
  syscall?: string
  /** WAL_IO and WAL_LOCKED: the file involved. */
  path?: string

  constructor(code: WalErrorCode, message: string, details: WalErrorDetails = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined)
    this.name = 'WalError'
    this.code = code
    if (details.segment !== undefined) this.segment = details.segment
    if (details.offset !== undefined) this.offset = details.offset
    if (details.syscall !== undefined) this.syscall = details.syscall
    if (details.path !== undefined) this.path = details.path
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

const WRITE_HINT = 'The log refuses further appends; close it, fix the cause (disk space, permissions, hardware) and reopen.'
const OPEN_HINT = 'Nothing was changed by this failed step; fix the cause (path, permissions, disk space) and open again.'

export function ioError(err: unknown, what: string, path: string, hint: 'write' | 'open' = 'write'): WalError {
  const cause = toSystemError(err)
  const syscall = cause.syscall ?? 'unknown'
  return new WalError('WAL_IO', `${what} failed on ${path}: ${syscall} ${cause.code ?? ''} (${cause.message}). ${hint === 'write' ? WRITE_HINT : OPEN_HINT}`, {
    syscall,
    path,
    cause,
  })
}
