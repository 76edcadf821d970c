// One writer per directory. With the native addon: an OS lock (flock / LockFileEx) on
// DIR/LOCK, dropped by the OS when the process dies. Without it: the LOCK file holds the
// owner's pid, and a lock whose pid is no longer alive is taken over.
import * as fs from 'node:fs'
import { join } from 'node:path'
import { WalError, ioError } from './errors.js'
import { loadAddon } from './native-addon.js'

const heldInProcess = new Set<string>()

export interface DirLock {
  release(): void
}

function locked(dir: string, holder: string): WalError {
  return new WalError(
    'WAL_LOCKED',
    `The WAL in ${dir} is already open for writing (${holder}). Close the other instance first, or open with { readOnly: true } to inspect it.`,
    { path: join(dir, 'LOCK') },
  )
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function acquireLock(dir: string): DirLock {
  const path = join(dir, 'LOCK')
  const key = fs.realpathSync(dir)
  if (heldInProcess.has(key)) throw locked(dir, 'by this process')
  const addon = loadAddon().addon
  let fd: number
  try {
    fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
  } catch (err) {
    throw ioError(err, 'Opening the lock file', path)
  }
  try {
    if (addon) {
      if (!addon.tryLock(fd)) throw locked(dir, 'by another process')
    } else {
      const owner = Number(fs.readFileSync(fd, 'utf8').trim())
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && pidAlive(owner)) throw locked(dir, `by pid ${owner}`)
    }
    const pid = Buffer.from(`${process.pid}\n`)
    fs.ftruncateSync(fd, 0)
    fs.writeSync(fd, pid, 0, pid.length, 0)
  } catch (err) {
    fs.closeSync(fd)
    if (err instanceof WalError) throw err
    throw ioError(err, 'Locking', path)
  }
  heldInProcess.add(key)
  let released = false
  return {
    release() {
      if (released) return
      released = true
      heldInProcess.delete(key)
      try {
        if (addon) addon.unlock(fd)
        else fs.ftruncateSync(fd, 0)
      } finally {
        fs.closeSync(fd)
      }
    },
  }
}
