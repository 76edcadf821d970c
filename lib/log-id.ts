// The log's id: 128 random bits, hex, in the file LOGID, created with the log (or by the
// first writable open of a log made before ids existed) and never changed after. A
// directory deleted and created again gets a new one, so a consumer that stored the id
// next to its position can tell that its position no longer applies.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { ioError } from './errors.js'
import type { Backend } from './backend.js'
import { fsCall, syncDir, syncDirAsync } from './segments.js'

export const LOG_ID_FILE = 'LOGID'
const ID = /^[0-9a-f]{32}$/

/** The id, or '' when the log has none yet (a readOnly open of a log no writer has opened since ids exist). */
export function readLogId(dir: string): string {
  try {
    const id = fs.readFileSync(join(dir, LOG_ID_FILE), 'utf8').trim()
    return ID.test(id) ? id : ''
  } catch {
    return ''
  }
}

/** A new id and the files it is written through (a temporary file renamed into place). */
function newLogId(dir: string): { id: string; path: string; tmp: string } {
  // Web Crypto's global: node:crypto loads only when a log is created, not at every import.
  const id = Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(16))).toString('hex')
  return { id, path: join(dir, LOG_ID_FILE), tmp: join(dir, `.logid-${process.pid}.tmp`) }
}

/** The id, created durably if missing (writable opens, under the lock). */
export function ensureLogId(dir: string): string {
  const existing = readLogId(dir)
  if (existing) return existing
  const { id, path, tmp } = newLogId(dir)
  try {
    const fd = fs.openSync(tmp, 'w', 0o644)
    try {
      fs.writeSync(fd, id + '\n', 0)
      fs.fdatasyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, path)
  } catch (err) {
    fs.rmSync(tmp, { force: true })
    throw ioError(err, 'Creating the log id', path, 'open')
  }
  syncDir(dir, 'open')
  return id
}

/** ensureLogId with its writes and syncs on the thread pool (an async open). */
export async function ensureLogIdAsync(dir: string, backend: Backend): Promise<string> {
  const existing = readLogId(dir)
  if (existing) return existing
  const { id, path, tmp } = newLogId(dir)
  try {
    const fd = await fsCall<number>((cb) => fs.open(tmp, 'w', 0o644, cb))
    try {
      const bytes = Buffer.from(id + '\n')
      await backend.write(fd, bytes, 0, bytes.length, 0, true)
    } finally {
      await fsCall<void>((cb) => fs.close(fd, cb)) // before the next open can reuse its number
    }
    await fsCall<void>((cb) => fs.rename(tmp, path, cb))
  } catch (err) {
    fs.rmSync(tmp, { force: true })
    throw ioError(err, 'Creating the log id', path, 'open')
  }
  await syncDirAsync(dir, 'open')
  return id
}
