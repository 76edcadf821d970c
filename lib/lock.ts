// One writer per directory: a second writer, in this process or another, is refused with WAL_LOCKED. Synchronous, because openSync takes it.
//
// The claim must not rest on the LOCK file: anyone can delete or replace that file while the
// lock is held, and a new opener would then create and lock a fresh one. So a writer takes
// every claim its platform and build offer, and is refused if any of them is taken:
//
//  - With the native addon, on POSIX: flock on the WAL directory itself (opened read-only).
//    No file operation inside the directory can swap it, and the OS drops the lock when the
//    process dies. If the file system refuses flock on a directory (some network file
//    systems), the LOCK file's lock below is the OS lock.
//  - On Linux with a Node whose node:net binds abstract names (20.8 and later), with or
//    without the addon, where Unix sockets are allowed: an abstract-namespace Unix socket
//    named after the directory's device and inode, '\0fastwal-lock:<dev>:<ino>', bound
//    synchronously (by the addon, under each address a Node may bind for that name; without
//    it, by node:net, which is loaded only then because it costs milliseconds at start-up).
//    The kernel refuses a second bind of the name (in this process or another, in the same
//    network namespace) and frees it when the process dies, SIGKILL included; no file is
//    involved. Processes with and without the addon take it alike, so they exclude each other.
//    (Network namespaces each have their own names: containers sharing a volume exclude each
//    other through the directory's flock, i.e. with the addon.) LOCK then only informs: it
//    holds the holder's pid and, with the addon, is flocked too, which keeps out fastwal 0.1.0
//    (it flocked LOCK only) and covers network file systems.
//  - Without the socket (macOS, BSDs, Windows, a sandbox refusing AF_UNIX, or a Node whose
//    node:net cannot bind abstract names): LOCK itself is the claim. It appears atomically, holding
//    the claimant's pid, by link() of a private file; a LOCK that is empty (released) or names
//    a dead process is replaced (rename) only by whoever holds a guard file named after that
//    LOCK's inode, and only after rechecking it under the guard, so two claimants never both
//    replace it. With the addon the published file is OS-locked as well (flock, LockFileEx on
//    Windows, where directories cannot be opened) and, on POSIX, the directory is flocked.
//    Limits: without the addon there, deleting LOCK while it is held lets a second writer in,
//    and a dead holder whose pid was reused by a live process keeps the lock until LOCK is
//    removed by hand. Pids mean nothing across hosts or pid namespaces.
//
// Within one process, a registry shared by every copy of the package (a Set of '<dev>:<ino>'
// keys on globalThis under Symbol.for('fastwal.locks')) refuses a second writer before any
// system call; the OS claims above would refuse it too, except LOCK-as-claim, which names
// our own pid. A held LOCK names its writer, '<pid>\nfastwal start=<ms>\n', and is emptied
// on release. The start is when its process started, so that a LOCK naming this pid but left
// by an earlier process with the same pid (a restarted container's pid 1) is told apart from
// one held by another thread of this process.
import * as fs from 'node:fs'
import type * as net from 'node:net'
import { join } from 'node:path'
import { WalError, ioError } from './errors.js'
import { loadAddon, type NativeAddon } from './native-addon.js'

export interface DirLock {
  release(): void
}

/** For tests: act as on another platform or build (defaults: this process's). */
export interface LockEnvironment {
  platform?: NodeJS.Platform
  /** null: as if the addon could not be loaded. */
  addon?: NativeAddon | null
}

const REGISTRY = Symbol.for('fastwal.locks')

/** The directories held by writers in this process, shared by every copy of the package. */
function registry(): Set<string> {
  const g = globalThis as unknown as Record<symbol, Set<string> | undefined>
  let set = g[REGISTRY]
  if (!set) {
    set = new Set<string>()
    try {
      Object.defineProperty(globalThis, REGISTRY, { value: set, enumerable: false, writable: false, configurable: false })
    } catch {
      // a frozen global: this copy keeps its own (the OS claims still apply)
      return (localRegistry ??= set)
    }
  }
  return set
}
let localRegistry: Set<string> | undefined

/** When this process started (ms since the epoch), alike in every thread and package copy. */
const PROCESS_START = Math.round(Date.now() - process.uptime() * 1000)
const SAME_START_MS = 50

function lockContent(): Buffer {
  return Buffer.from(`${process.pid}\nfastwal start=${PROCESS_START}\n`)
}

interface Owner {
  pid: number
  start?: number
}

function parseOwner(text: string): Owner | undefined {
  const [first = '', second = ''] = text.split('\n')
  if (!/^\s*[1-9][0-9]{0,9}\s*$/.test(first)) return undefined
  const m = /^fastwal start=([0-9]+)\s*$/.exec(second)
  return { pid: Number(first), start: m ? Number(m[1]) : undefined }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Our pid counts only if the file was written since this process started (another thread). */
function ownerAlive(o: Owner): boolean {
  if (o.pid === process.pid) return o.start !== undefined && Math.abs(o.start - PROCESS_START) < SAME_START_MS
  return pidAlive(o.pid)
}

function describe(o: Owner | undefined): string {
  if (!o) return 'by another process'
  if (o.pid === process.pid) return 'by another copy of fastwal or another thread in this process'
  return `by process ${o.pid}`
}

function locked(dir: string, holder: string): WalError {
  return new WalError(
    'WAL_LOCKED',
    `The WAL in ${dir} is already open for writing (${holder}). Close the other instance first, or open with { readOnly: true } to inspect it.`,
    { path: join(dir, 'LOCK') },
  )
}

/** Raised inside acquireLock when a claim is taken; turned into WAL_LOCKED. */
class Taken {
  constructor(readonly holder: string) {}
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd)
  } catch {
    // already failing: the first error is the one reported
  }
}

function unlinkQuietly(path: string): void {
  try {
    fs.unlinkSync(path)
  } catch {
    // gone already, or the directory refuses: a stray temporary file is harmless
  }
}

// --- Abstract-namespace socket (Linux) ------------------------------------------------------

/** A held abstract name; close() frees it. */
interface AbstractClaim {
  close(): void
}

/** sockaddr_un.sun_path on Linux. */
const SUN_PATH = 108

/**
 * Claims the abstract socket name `name` (leading NUL included) now: a claim, null if another
 * socket holds it, or undefined if this platform or Node cannot bind abstract names.
 *
 * The addon binds both addresses a Node may use for the name: Node 20's libuv binds the whole
 * 108-byte sun_path, NUL-padded (as /proc/net/unix shows); a libuv that counts only the name's
 * bytes, as most programs do, binds the exact address. A writer with the addon thus excludes
 * writers without it whichever way their Node binds.
 */
function claimAbstract(name: string, addon: NativeAddon | undefined): AbstractClaim | null | undefined {
  if (typeof addon?.bindAbstract === 'function') {
    // Only where this Node's node:net binds abstract names too: a writer without the addon
    // here takes the socket exactly when this one does, or both claim LOCK itself.
    if (!nodeBindsAbstractNames()) return undefined
    const exact = Buffer.from(name, 'latin1')
    const padded = Buffer.alloc(SUN_PATH)
    exact.copy(padded)
    const fds: number[] = []
    let taken = false
    try {
      for (const address of [exact, padded]) {
        const fd = addon.bindAbstract(address)
        if (fd < 0) {
          taken = true
          break
        }
        fds.push(fd)
      }
    } catch {
      // No Unix sockets here (a sandbox refusing AF_UNIX): as without abstract sockets.
      closeAll(fds)
      return undefined
    }
    if (taken) {
      closeAll(fds)
      return null
    }
    return { close: () => closeAll(fds, true) }
  }
  if (!canUseAbstractSockets()) return undefined
  return listenAbstract(name) ?? null
}

/** Closes every fd; with `report`, throws the first failure after trying them all. */
function closeAll(fds: number[], report = false): void {
  let first: unknown
  for (const fd of fds.splice(0)) {
    try {
      fs.closeSync(fd)
    } catch (err) {
      first ??= err
    }
  }
  if (report && first !== undefined) throw first
}

/**
 * Whether node:net on this Node binds an abstract name as given, which canUseAbstractSockets()
 * probes, answered without loading node:net. Checked on Linux builds: 18.18-18.20, 20.0-20.7
 * cannot (EINVAL, or every such name is one address); 20.8+, 21 and 22 can.
 */
export function nodeBindsAbstractNames(version = process.versions.node): boolean {
  const [major, minor] = version.split('.').map(Number)
  return major > 20 || (major === 20 && minor >= 8)
}

/** Binds and listens on `name` now, or returns undefined (name taken, or no such sockets). */
function listenAbstract(name: string): net.Server | undefined {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createServer } = require('node:net') as typeof net
  const server = createServer((conn) => conn.destroy())
  // A failed bind closes the handle at once and leaves `listening` false; the error itself is
  // emitted on the next tick, and must not become an uncaught exception.
  server.on('error', () => {})
  try {
    // exclusive: bind here even in a cluster worker (otherwise the primary binds, later).
    server.listen({ path: name, exclusive: true, backlog: 1 })
  } catch {
    return undefined
  }
  if (!server.listening) return undefined
  server.unref()
  return server
}

let abstractSocketsWork: boolean | undefined

/**
 * Whether this Node binds abstract names as given. Older libuv cut the name at its leading
 * NUL, so every name became one and the same address: two distinct names must both bind.
 */
export function canUseAbstractSockets(): boolean {
  if (abstractSocketsWork === undefined) {
    const base = `\0fastwal-probe:${process.pid}:${Math.random().toString(36).slice(2)}:`
    const a = listenAbstract(base + 'a')
    const b = a ? listenAbstract(base + 'b') : undefined
    abstractSocketsWork = a !== undefined && b !== undefined
    a?.close()
    b?.close()
  }
  return abstractSocketsWork
}

// --- LOCK as the claim (no abstract socket) -------------------------------------------------

/** What a claim file holds now: undefined if there is none. */
function inspect(path: string): { ino: bigint; owner?: Owner; unreadable?: boolean } | undefined {
  let fd: number
  try {
    fd = fs.openSync(path, 'r')
  } catch (err) {
    if (errCode(err) === 'ENOENT') return undefined
    throw err
  }
  try {
    const ino = fs.fstatSync(fd, { bigint: true }).ino
    try {
      return { ino, owner: parseOwner(fs.readFileSync(fd, 'utf8')) }
    } catch (err) {
      // Windows: another holder's LockFileEx forbids reading its LOCK.
      if (['EBUSY', 'EPERM', 'EACCES', 'EAGAIN'].includes(errCode(err) ?? '')) return { ino, unreadable: true }
      throw err
    }
  } finally {
    fs.closeSync(fd)
  }
}

const MAX_GUARD_DEPTH = 3
let claimCounter = 0

/**
 * Makes `path` a file holding our pid, atomically, unless it names a live process. Returns
 * the open fd of that file (truncating it releases the claim), or throws Taken.
 * `osLock` is applied to the file before it is published.
 */
function claimFile(path: string, osLock: ((fd: number) => boolean) | undefined, depth = 0): number {
  const tmp = `${path}.${process.pid}-${++claimCounter}-${Math.random().toString(36).slice(2, 10)}.tmp`
  const fd = fs.openSync(tmp, 'wx', 0o644)
  let published = false
  try {
    const content = lockContent()
    fs.writeSync(fd, content, 0, content.length, 0)
    if (osLock && !osLock(fd)) throw new Error(`could not lock the new file ${tmp}`)
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        fs.linkSync(tmp, path) // fails if path exists: the claim of a free directory
        published = true
        unlinkQuietly(tmp)
        return fd
      } catch (err) {
        if (errCode(err) !== 'EEXIST') throw err
      }
      const seen = inspect(path)
      if (!seen) continue // released and removed meanwhile: link again
      if (seen.unreadable) throw new Taken('by another process')
      if (seen.owner && ownerAlive(seen.owner)) {
        const other = seen.owner.pid !== process.pid ? `; if that process does not use this WAL (its pid was reused), delete ${path}` : ''
        throw new Taken(`${describe(seen.owner)}, as ${path} says${other}`)
      }
      // Empty (released) or left by a dead process: replace it, but only under the guard for
      // this very file, and only if it is still that file and still not held.
      if (depth >= MAX_GUARD_DEPTH) throw new Taken(`by a process that died taking over a stale lock; remove ${path}.break-* files`)
      const guardPath = `${path}.break-${seen.ino}`
      const guard = claimFile(guardPath, undefined, depth + 1) // Taken: someone live is replacing it and will hold it
      try {
        const now = inspect(path)
        if (now && now.ino === seen.ino && !now.unreadable && !(now.owner && ownerAlive(now.owner))) {
          try {
            fs.renameSync(tmp, path)
            published = true
            return fd
          } catch (err) {
            // Windows refuses to replace a file another process has open (reading it): retry.
            if (!(process.platform === 'win32' && ['EPERM', 'EACCES', 'EBUSY'].includes(errCode(err) ?? ''))) throw err
          }
        }
      } finally {
        unlinkQuietly(guardPath) // ours: a live guard is never replaced
        closeQuietly(guard)
      }
    }
    throw new Taken('by another process; the lock changed hands too often to tell')
  } finally {
    if (!published) {
      unlinkQuietly(tmp)
      closeQuietly(fd)
    }
  }
}

// --- acquireLock ----------------------------------------------------------------------------

/** Takes the writer's lock on `dir` (an existing directory), or throws WAL_LOCKED / WAL_IO. */
export function acquireLock(dir: string, env: LockEnvironment = {}): DirLock {
  const platform = env.platform ?? process.platform
  const addon = env.addon === undefined ? loadAddon().addon : (env.addon ?? undefined)
  const lockPath = join(dir, 'LOCK')
  let key: string
  try {
    const st = fs.statSync(dir, { bigint: true })
    key = `${st.dev}:${st.ino}`
  } catch (err) {
    throw ioError(err, 'Locking the WAL directory', dir, 'lock')
  }
  const held = registry()
  if (held.has(key)) throw locked(dir, 'by another WriteAheadLog in this process')

  const undo: (() => void)[] = [] // release steps, run last first
  const runUndo = (): unknown => {
    let first: unknown
    for (const step of undo.reverse()) {
      try {
        step()
      } catch (err) {
        first ??= err
      }
    }
    undo.length = 0
    return first
  }
  /** Who holds it, from LOCK, for the message (best effort). */
  const holderFromFile = (): string => {
    try {
      return describe(parseOwner(fs.readFileSync(lockPath, 'utf8')))
    } catch {
      return describe(undefined)
    }
  }

  try {
    let dirLocked = false
    if (addon && platform !== 'win32') {
      const dirFd = fs.openSync(dir, 'r')
      let taken: boolean | undefined
      try {
        taken = addon.tryLock(dirFd)
      } catch {
        taken = undefined // flock refused on this file system: the LOCK file's lock serves
      }
      if (taken === undefined) {
        fs.closeSync(dirFd)
      } else {
        undo.push(() => fs.closeSync(dirFd))
        if (!taken) throw new Taken(holderFromFile())
        undo.push(() => addon.unlock(dirFd))
        dirLocked = true
      }
    }

    const claim = platform === 'linux' ? claimAbstract(`\0fastwal-lock:${key}`, addon) : undefined
    if (claim === null) throw new Taken(holderFromFile())
    if (claim) {
      undo.push(() => claim.close())
      // LOCK informs (and, with the addon, is flocked too: see the top of this file).
      const fd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
      undo.push(() => fs.closeSync(fd))
      if (addon) {
        let taken: boolean | undefined
        try {
          taken = addon.tryLock(fd)
        } catch (err) {
          if (!dirLocked) throw err // the socket alone would not reach other hosts or namespaces
        }
        if (taken === false) throw new Taken(holderFromFile())
        if (taken) undo.push(() => addon.unlock(fd))
      }
      const content = lockContent()
      fs.ftruncateSync(fd, 0)
      fs.writeSync(fd, content, 0, content.length, 0)
      undo.push(() => fs.ftruncateSync(fd, 0))
    } else {
      let fileLocked = false
      const osLock = (f: number): boolean => {
        try {
          return (fileLocked = addon!.tryLock(f)) // a new file: nobody else can hold it
        } catch (err) {
          if (dirLocked) return true // flock refused here, but the directory's lock holds
          throw err
        }
      }
      const fd = claimFile(lockPath, addon ? osLock : undefined)
      undo.push(() => fs.closeSync(fd))
      if (fileLocked) undo.push(() => addon!.unlock(fd))
      undo.push(() => fs.ftruncateSync(fd, 0)) // an empty LOCK is a free one
    }
  } catch (err) {
    runUndo()
    if (err instanceof Taken) throw locked(dir, err.holder)
    throw ioError(err, 'Locking the WAL directory', lockPath, 'lock')
  }

  held.add(key)
  let released = false
  return {
    release() {
      if (released) return
      released = true
      held.delete(key)
      const err = runUndo()
      if (err) throw ioError(err, 'Releasing the lock', lockPath, 'lock')
    },
  }
}
