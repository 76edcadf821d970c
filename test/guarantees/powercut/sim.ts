// Power-cut simulation from an strace log: which written bytes and directory entries a
// power cut may keep or lose.
//
// The writer runs once under
//   strace -f -qq -y -xx -s <big> -o <trace> -e trace=<TRACED_SYSCALLS> node writer.ts ...
// and this module replays what it did to one directory: file writes, truncations and
// syncs, and the directory's creates, unlinks, renames and syncs. At any line boundary of
// the trace (a crash point) it can build the directory as a power cut there could leave it:
//
//  - a file keeps the content it had at its last completed fdatasync/fsync; of the bytes
//    written since, any subset of 4 KiB pages survives, each page at any of the contents
//    it went through since that sync (the page cache writes pages back in any order);
//  - a file's size is either its size at the last sync or the size last set (by a write
//    past the end, ftruncate or O_TRUNC);
//  - the directory keeps the entries it had at its last completed fsync; each later
//    create, unlink and rename may or may not have reached the disk, independently of
//    the others (a rename is atomic: both names change or neither);
//  - a sync covers only the writes that had returned before it was called (a write still
//    running on another thread when the fsync starts is treated as unsynced).
//
// Ack markers (writes to the writer's ack file) are tracked on the same timeline, so each
// crash point knows which appends had been acknowledged before it.
//
// The directory may start empty (a writer creating a new log) or from a snapshot of files
// that existed before the trace began (a process opening, and repairing, an existing log):
// those count as fully synced, file contents and directory entries alike.
import * as path from 'node:path'

export const PAGE = 4096

/** Syscalls to trace: everything that changes a file or directory, plus fd bookkeeping. */
export const TRACED_SYSCALLS = [
  'open', 'openat', 'openat2', 'creat', 'close', 'dup', 'dup2', 'dup3', 'fcntl',
  'write', 'writev', 'pwrite64', 'pwritev', 'pwritev2', 'fallocate', 'ftruncate', 'truncate',
  'fsync', 'fdatasync', 'sync_file_range', 'sync', 'syncfs',
  'unlink', 'unlinkat', 'rename', 'renameat', 'renameat2', 'link', 'linkat', 'mkdir', 'mkdirat', 'rmdir',
  'copy_file_range', 'sendfile', 'splice', 'io_uring_setup', 'io_uring_enter',
]

// --- parsing ---------------------------------------------------------------------------

export interface Syscall {
  pid: number
  name: string
  args: string[] // top-level arguments as printed, unparsed
  ret: number // NaN when unknown (`= ?`)
  retRaw: string // the whole return part, e.g. "28</tmp/x/LOCK>" or "-1 ENOENT (...)"
  entry: number // line index of the call (or of its "<unfinished ...>" part)
  exit: number // line index of its result (same as entry when not split)
}

const LINE_RE = /^(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?(.*)$/

/** Splits an argument list at top-level commas (outside quotes, () [] {} and <> annotations). */
export function splitArgs(s: string): string[] {
  const out: string[] = []
  let depth = 0
  let inStr = false
  let start = 0
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (inStr) {
      if (c === '\\') i++
      else if (c === '"') inStr = false
      continue
    }
    if (c === '"') inStr = true
    else if (c === '(' || c === '[' || c === '{' || c === '<') depth++
    else if (c === ')' || c === ']' || c === '}' || c === '>') depth--
    else if (c === ',' && depth === 0) {
      out.push(s.slice(start, i).trim())
      start = i + 1
    }
  }
  const last = s.slice(start).trim()
  if (last !== '' || out.length > 0) out.push(last)
  return out
}

/** Finds the index of the ")" closing the argument list (the last top-level one). */
function closeParen(s: string, from: number): number {
  let depth = 0
  let inStr = false
  let close = -1
  for (let i = from; i < s.length; i++) {
    const c = s[i]
    if (inStr) {
      if (c === '\\') i++
      else if (c === '"') inStr = false
      continue
    }
    if (c === '"') inStr = true
    else if (c === '(' || c === '[' || c === '{') depth++
    else if (c === ')' || c === ']' || c === '}') {
      if (depth === 0 && c === ')') {
        close = i
        break
      }
      depth--
    }
  }
  return close
}

function parseRet(s: string): { ret: number; retRaw: string } {
  const m = /^\s*=\s*(.*)$/.exec(s)
  if (!m) return { ret: NaN, retRaw: s.trim() }
  const raw = m[1].trim()
  const n = /^-?\d+/.exec(raw)
  return { ret: n ? Number(n[0]) : NaN, retRaw: raw }
}

/** Parses `strace -f -y -xx -o file` output into completed syscalls, in order of entry. */
export function parseStrace(text: string): Syscall[] {
  const lines = text.split('\n')
  const out: Syscall[] = []
  const pending = new Map<number, { pid: number; name: string; argText: string; entry: number }>()
  for (let li = 0; li < lines.length; li++) {
    const line = lines[li]
    if (line === '') continue
    const m = LINE_RE.exec(line)!
    const pid = Number(m[1] ?? m[2] ?? 0)
    const body = m[3]
    if (body.startsWith('---') || body.startsWith('+++')) continue
    if (body.startsWith('<...')) {
      const r = /^<\.\.\. ([\w]+) resumed>(.*)$/.exec(body)
      if (!r) throw new Error(`strace line ${li + 1}: cannot parse: ${line.slice(0, 200)}`)
      const p = pending.get(pid)
      if (!p || p.name !== r[1]) {
        // A call that was already running when tracing began, or one we lost: only fatal
        // if we would need it, and we cannot know its arguments anyway.
        continue
      }
      pending.delete(pid)
      const rest = r[2]
      const close = closeParen(rest, 0)
      if (close < 0) {
        if (/^\s*<unfinished \.\.\.>\s*\)?\s*=\s*\?/.test(rest) || rest.includes('= ?')) continue // killed mid-call
        throw new Error(`strace line ${li + 1}: cannot parse resumed call: ${line.slice(0, 200)}`)
      }
      const argText = p.argText + rest.slice(0, close)
      const { ret, retRaw } = parseRet(rest.slice(close + 1))
      out.push({ pid, name: p.name, args: splitArgs(argText), ret, retRaw, entry: p.entry, exit: li })
      continue
    }
    const call = /^([\w]+)\((.*)$/.exec(body)
    if (!call) {
      if (/^(strace|exit|\?)/.test(body)) continue
      throw new Error(`strace line ${li + 1}: cannot parse: ${line.slice(0, 200)}`)
    }
    const name = call[1]
    const rest = call[2]
    const unfinished = /\s*<unfinished \.\.\.>$/.exec(rest)
    if (unfinished) {
      pending.set(pid, { pid, name, argText: rest.slice(0, unfinished.index), entry: li })
      continue
    }
    const close = closeParen(rest, 0)
    if (close < 0) throw new Error(`strace line ${li + 1}: cannot parse: ${line.slice(0, 200)}`)
    const { ret, retRaw } = parseRet(rest.slice(close + 1))
    out.push({ pid, name, args: splitArgs(rest.slice(0, close)), ret, retRaw, entry: li, exit: li })
  }
  out.sort((a, b) => a.entry - b.entry)
  return out
}

/** Decodes a C string as strace prints it with -xx ("\x41\x42"), other escapes included. */
export function decodeString(arg: string): Buffer {
  if (/"\.\.\.$/.test(arg)) throw new Error(`strace truncated a string argument (raise -s): ${arg.slice(0, 80)}...`)
  const m = /^"(.*)"$/s.exec(arg)
  if (!m) throw new Error(`not a string argument: ${arg.slice(0, 80)}`)
  return unescape(m[1])
}

function unescape(s: string): Buffer {
  if (/^(?:\\x[0-9a-fA-F]{2})*$/.test(s)) return Buffer.from(s.replace(/\\x/g, ''), 'hex') // the -xx form
  const bytes: number[] = []
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (c !== '\\') {
      bytes.push(...Buffer.from(c, 'latin1'))
      continue
    }
    const n = s[++i]
    if (n === 'x') {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16))
      i += 2
    } else if (n >= '0' && n <= '7') {
      let j = i
      while (j < i + 3 && s[j] >= '0' && s[j] <= '7') j++
      bytes.push(parseInt(s.slice(i, j), 8))
      i = j - 1
    } else {
      const map: Record<string, number> = { n: 10, t: 9, r: 13, v: 11, f: 12, '\\': 92, '"': 34, a: 7, b: 8 }
      if (!(n in map)) throw new Error(`unknown escape \\${n} in strace output`)
      bytes.push(map[n])
    }
  }
  return Buffer.from(bytes)
}

/** An fd argument with its -y annotation: `29<\x2f\x74...>` → { fd: 29, path: '/t...' }. */
export function parseFdArg(arg: string): { fd: number; path: string | undefined } {
  // An unlinked file shows as `18<\x2f...>(deleted)` (or with " (deleted)" inside the <>).
  const m = /^(-?\d+|AT_FDCWD)(?:<(.*)>)?(?:\s*\(deleted\))?$/s.exec(arg.trim())
  if (!m) throw new Error(`not an fd argument: ${arg.slice(0, 200)}`)
  const fd = m[1] === 'AT_FDCWD' ? -100 : Number(m[1])
  let p = m[2] === undefined ? undefined : unescape(m[2]).toString('latin1')
  if (p !== undefined) p = p.replace(/ \(deleted\)$/, '')
  return { fd, path: p }
}

// --- the model -------------------------------------------------------------------------

type Mutation = { kind: 'write'; pos: number; data: Buffer; exit: number } | { kind: 'trunc'; size: number; exit: number }

class Inode {
  synced: Buffer = Buffer.alloc(0)
  pending: Mutation[] = []
  constructor(readonly id: number) {}
}

type DirOp =
  | { kind: 'link'; name: string; inode: Inode; exit: number }
  | { kind: 'unlink'; name: string; exit: number }
  | { kind: 'rename'; from: string; to: string; exit: number }

function applyMutation(buf: Buffer, m: Mutation): Buffer {
  if (m.kind === 'trunc') {
    if (m.size <= buf.length) return buf.subarray(0, m.size)
    const b = Buffer.alloc(m.size)
    buf.copy(b)
    return b
  }
  const end = m.pos + m.data.length
  let b = buf
  if (end > buf.length) {
    b = Buffer.alloc(end)
    buf.copy(b)
  }
  m.data.copy(b, m.pos)
  return b
}

/** The file's size with every mutation made so far applied, durable or not. */
function currentSize(ino: Inode): number {
  let size = ino.synced.length
  for (const m of ino.pending) size = m.kind === 'trunc' ? m.size : Math.max(size, m.pos + m.data.length)
  return size
}

function applyDirOp(entries: Map<string, Inode>, op: DirOp): void {
  if (op.kind === 'link') entries.set(op.name, op.inode)
  else if (op.kind === 'unlink') entries.delete(op.name)
  else {
    const ino = entries.get(op.from)
    if (!ino) return
    entries.delete(op.from)
    entries.set(op.to, ino)
  }
}

export interface Ack {
  line: number
  /**
   * A: append acknowledged, S: sync() resolved, C: checkpoint() resolved (the writer);
   * R, O, X: an open about to start, resolved, closed (the repair fixture; `first` = job).
   */
  kind: 'A' | 'S' | 'C' | 'R' | 'O' | 'X'
  first: number
  last: number
}

/** How a crash state chooses among the possibilities. */
export type Policy = 'lose' | 'keep' | 'random'

export interface CrashState {
  /** Crash point: the state after every trace line before this one. */
  line: number
  /** Acknowledgements the writer had made before the crash point. */
  acks: Ack[]
  /** File name → content of the directory after the power cut. */
  files: Map<string, Buffer>
  /** What was chosen, for the report of a failure. */
  notes: string[]
}

interface TimedEvent {
  line: number
  order: number
  run(): void
}

export class PowerCutModel {
  readonly syscalls: Syscall[]
  readonly events: TimedEvent[] = []
  /** Trace lines where something relevant to the directory happens, with what. */
  readonly marks: { line: number; what: string }[] = []
  readonly acks: Ack[] = []
  /** Counts of modeled operations, for sanity checks. */
  readonly counts: Record<string, number> = {}

  private nextInode = 1
  private durable = new Map<string, Inode>()
  private current = new Map<string, Inode>()
  private pendingDir: DirOp[] = []
  private fds = new Map<number, { dir: boolean; inode?: Inode; append?: boolean }>()
  private ackLines: Ack[] = []
  private cursor = 0
  private appliedUpTo = 0

  /**
   * `initial`: the files in `dir` before the trace began (name → content), all durable.
   * Without it the directory starts empty.
   */
  constructor(trace: string, readonly dir: string, readonly ackFile: string, readonly cwd: string, initial?: ReadonlyMap<string, Buffer>) {
    this.dir = path.resolve(dir)
    this.ackFile = path.resolve(ackFile)
    this.syscalls = parseStrace(trace)
    for (const [name, data] of initial ?? []) {
      if (name === '' || name.includes('/')) throw new Error(`initial file name ${JSON.stringify(name)}: only plain files directly in the directory are modeled`)
      const ino = new Inode(this.nextInode++)
      ino.synced = Buffer.from(data)
      this.durable.set(name, ino)
      this.current.set(name, ino)
    }
    this.buildEvents()
    this.events.sort((a, b) => a.line - b.line || a.order - b.order)
  }

  private count(what: string): void {
    this.counts[what] = (this.counts[what] ?? 0) + 1
  }

  private resolve(dirfd: { fd: number; path: string | undefined }, p: string): string {
    if (path.isAbsolute(p)) return path.resolve(p)
    const base = dirfd.path ?? (dirfd.fd === -100 ? this.cwd : undefined)
    if (base === undefined) throw new Error(`relative path ${p} against an unknown directory fd ${dirfd.fd}`)
    return path.resolve(base, p)
  }

  /** The name inside the directory, '' for the directory itself, undefined if outside. */
  private nameIn(abs: string): string | undefined {
    if (abs === this.dir) return ''
    if (path.dirname(abs) === this.dir) return path.basename(abs)
    if (abs.startsWith(this.dir + path.sep)) throw new Error(`the writer touched ${abs}, inside a subdirectory of the log: not modeled`)
    return undefined
  }

  private isOurs(p: string | undefined): boolean {
    return p !== undefined && this.nameIn(path.resolve(p)) !== undefined
  }

  private at(line: number, run: () => void): void {
    this.events.push({ line, order: this.events.length, run })
  }

  private buildEvents(): void {
    for (const sc of this.syscalls) {
      const a = sc.args
      switch (sc.name) {
        case 'open':
        case 'openat':
        case 'creat': {
          if (!(sc.ret >= 0)) break
          const dirfd = sc.name === 'openat' ? parseFdArg(a[0]) : { fd: -100, path: undefined }
          const p = decodeString(sc.name === 'openat' ? a[1] : a[0]).toString('latin1')
          const abs = this.resolve(dirfd, p)
          const name = this.nameIn(abs)
          if (name === undefined) break
          const flags = sc.name === 'creat' ? 'O_CREAT|O_TRUNC' : sc.name === 'openat' ? a[2] : a[1]
          const fd = sc.ret
          const create = /O_CREAT/.test(flags)
          const trunc = /O_TRUNC/.test(flags)
          this.marks.push({ line: sc.entry, what: `open ${name || '.'} ${flags}` })
          if (create && name !== '') this.count('open-creat')
          this.at(sc.entry, () => {
            if (name === '') {
              this.fds.set(fd, { dir: true })
              return
            }
            let ino = this.current.get(name)
            if (!ino) {
              if (!create) throw new Error(`trace line ${sc.entry + 1}: ${name} opened without O_CREAT but the model has no such file`)
              ino = new Inode(this.nextInode++)
              this.current.set(name, ino)
              this.pendingDir.push({ kind: 'link', name, inode: ino, exit: sc.exit })
            }
            if (trunc) ino.pending.push({ kind: 'trunc', size: 0, exit: sc.exit })
            this.fds.set(fd, { dir: false, inode: ino, append: /O_APPEND/.test(flags) })
          })
          break
        }
        case 'openat2':
          if (sc.ret >= 0 && this.isOurs(parseFdArg(sc.retRaw.split(/\s/)[0]).path)) throw new Error('openat2 on the log directory: not modeled')
          break
        case 'close': {
          const { fd, path: p } = parseFdArg(a[0])
          if (!this.isOurs(p)) break
          this.at(sc.entry, () => this.fds.delete(fd))
          break
        }
        case 'dup':
        case 'dup2':
        case 'dup3':
        case 'fcntl': {
          if (sc.name === 'fcntl' && !/F_DUPFD/.test(a[1] ?? '')) break
          const src = parseFdArg(a[0])
          if (!(sc.ret >= 0)) break
          const to = sc.ret
          if (!this.isOurs(src.path)) {
            // dup2 over one of our fds closes it.
            this.at(sc.entry, () => this.fds.delete(to))
            break
          }
          this.at(sc.entry, () => {
            const f = this.fds.get(src.fd)
            if (!f) throw new Error(`trace line ${sc.entry + 1}: dup of an fd the model does not know`)
            this.fds.set(to, f)
          })
          break
        }
        case 'write':
        case 'writev':
        case 'pwrite64':
        case 'pwritev':
        case 'pwritev2': {
          const { fd, path: p } = parseFdArg(a[0])
          if (p !== undefined && path.resolve(p) === this.ackFile) {
            if (sc.name !== 'write') throw new Error('ack markers must be written with write(2)')
            const text = decodeString(a[1]).toString('latin1')
            for (const m of text.matchAll(/([ASCROX])(\d+)(?:-(\d+))?/g)) {
              const ack: Ack = { line: sc.entry, kind: m[1] as Ack['kind'], first: Number(m[2]), last: Number(m[3] ?? m[2]) }
              this.acks.push(ack)
              this.at(sc.entry, () => this.ackLines.push(ack))
            }
            break
          }
          if (!this.isOurs(p)) break
          if (sc.name === 'writev') throw new Error(`trace line ${sc.entry + 1}: writev (at the file offset) to ${p}: only positional writes and write(2) to an O_APPEND fd are modeled`)
          if (!(sc.ret >= 0)) break
          if (sc.name === 'write') {
            // Only on an O_APPEND descriptor: the kernel puts the bytes at the end of the file
            // as it is when the write runs (one order of concurrent writes, taken at its entry).
            const data = decodeString(a[1])
            if (data.length < sc.ret) throw new Error(`trace line ${sc.entry + 1}: write data shorter than its result (raise -s)`)
            this.count('append')
            this.marks.push({ line: sc.exit, what: `append ${path.basename(p!)} +${sc.ret}` })
            this.at(sc.entry, () => {
              const f = this.fds.get(fd)
              if (!f || !f.inode) throw new Error(`trace line ${sc.entry + 1}: write to an fd the model does not know (${fd})`)
              if (!f.append) throw new Error(`trace line ${sc.entry + 1}: write (at the file offset) to ${p} on a descriptor without O_APPEND: only positional writes are modeled`)
              f.inode.pending.push({ kind: 'write', pos: currentSize(f.inode), data: data.subarray(0, sc.ret), exit: sc.exit })
            })
            break
          }
          let data: Buffer
          let pos: number
          if (sc.name === 'pwrite64') {
            data = decodeString(a[1])
            pos = Number(a[3])
          } else {
            const iov = [...a[1].matchAll(/iov_base=("(?:[^"\\]|\\.)*"(?:\.\.\.)?)/g)].map((m) => decodeString(m[1]))
            data = Buffer.concat(iov)
            pos = Number(a[3])
            if (sc.name === 'pwritev2' && a[4] && a[4] !== '0') throw new Error(`pwritev2 with flags ${a[4]}: not modeled`)
          }
          if (!Number.isSafeInteger(pos) || pos < 0) throw new Error(`trace line ${sc.entry + 1}: bad write position ${pos}`)
          if (data.length < sc.ret) throw new Error(`trace line ${sc.entry + 1}: write data shorter than its result (raise -s)`)
          const m: Mutation = { kind: 'write', pos, data: data.subarray(0, sc.ret), exit: sc.exit }
          this.count('write')
          this.marks.push({ line: sc.exit, what: `${sc.name} ${path.basename(p!)} ${pos}+${sc.ret}` })
          this.at(sc.entry, () => {
            const f = this.fds.get(fd)
            if (!f || !f.inode) throw new Error(`trace line ${sc.entry + 1}: write to an fd the model does not know (${fd})`)
            f.inode.pending.push(m)
          })
          break
        }
        case 'ftruncate': {
          const { fd, path: p } = parseFdArg(a[0])
          if (!this.isOurs(p) || sc.ret !== 0) break
          const size = Number(a[1])
          this.marks.push({ line: sc.entry, what: `ftruncate ${path.basename(p!)} ${size}` })
          this.count('ftruncate')
          this.at(sc.entry, () => {
            const f = this.fds.get(fd)
            if (!f || !f.inode) throw new Error(`trace line ${sc.entry + 1}: ftruncate of an fd the model does not know`)
            f.inode.pending.push({ kind: 'trunc', size, exit: sc.exit })
          })
          break
        }
        case 'truncate': {
          const abs = this.resolve({ fd: -100, path: undefined }, decodeString(a[0]).toString('latin1'))
          const name = this.nameIn(abs)
          if (name === undefined || sc.ret !== 0) break
          const size = Number(a[1])
          this.at(sc.entry, () => this.current.get(name)!.pending.push({ kind: 'trunc', size, exit: sc.exit }))
          break
        }
        case 'fsync':
        case 'fdatasync': {
          const { fd, path: p } = parseFdArg(a[0])
          if (!this.isOurs(p) || sc.ret !== 0) break
          const isDir = path.resolve(p!) === this.dir
          this.marks.push({ line: sc.exit, what: `${sc.name} ${isDir ? '.' : path.basename(p!)}` })
          this.count(isDir ? 'dirsync' : 'filesync')
          // Durable once it has returned; it covers what had returned before it started.
          let target: Inode | undefined
          this.at(sc.entry, () => {
            if (isDir) return
            target = this.fds.get(fd)?.inode
            if (!target) throw new Error(`trace line ${sc.entry + 1}: ${sc.name} of an fd the model does not know (${fd})`)
          })
          this.at(sc.exit, () => {
            if (isDir) {
              const covered = this.pendingDir.filter((op) => op.exit < sc.entry)
              this.pendingDir = this.pendingDir.filter((op) => op.exit >= sc.entry)
              for (const op of covered) applyDirOp(this.durable, op)
              return
            }
            const ino = target!
            const covered = ino.pending.filter((m) => m.exit < sc.entry)
            ino.pending = ino.pending.filter((m) => m.exit >= sc.entry)
            for (const m of covered) ino.synced = applyMutation(ino.synced, m)
          })
          break
        }
        case 'unlink':
        case 'unlinkat':
        case 'rmdir': {
          if (sc.ret !== 0) break
          const dirfd = sc.name === 'unlinkat' ? parseFdArg(a[0]) : { fd: -100, path: undefined }
          const abs = this.resolve(dirfd, decodeString(sc.name === 'unlinkat' ? a[1] : a[0]).toString('latin1'))
          const name = this.nameIn(abs)
          if (name === undefined) break
          if (name === '' || sc.name === 'rmdir') throw new Error('the writer removed the log directory: not modeled')
          this.marks.push({ line: sc.entry, what: `unlink ${name}` })
          this.count(name.endsWith('.wal') ? 'unlink-segment' : 'unlink')
          this.at(sc.entry, () => {
            this.current.delete(name)
            this.pendingDir.push({ kind: 'unlink', name, exit: sc.exit })
          })
          break
        }
        case 'rename':
        case 'renameat':
        case 'renameat2': {
          if (sc.ret !== 0) break
          const two = sc.name !== 'rename'
          const fromAbs = this.resolve(two ? parseFdArg(a[0]) : { fd: -100, path: undefined }, decodeString(two ? a[1] : a[0]).toString('latin1'))
          const toAbs = this.resolve(two ? parseFdArg(a[2]) : { fd: -100, path: undefined }, decodeString(two ? a[3] : a[1]).toString('latin1'))
          const from = this.nameIn(fromAbs)
          const to = this.nameIn(toAbs)
          if (from === undefined && to === undefined) break
          if (from === undefined || to === undefined || from === '' || to === '') throw new Error(`rename ${fromAbs} -> ${toAbs}: crosses the log directory, not modeled`)
          if (sc.name === 'renameat2' && a[4] && a[4] !== '0') throw new Error(`renameat2 flags ${a[4]}: not modeled`)
          this.marks.push({ line: sc.entry, what: `rename ${from} ${to}` })
          this.count('rename')
          this.at(sc.entry, () => {
            const ino = this.current.get(from)
            this.current.delete(from)
            if (ino) this.current.set(to, ino)
            this.pendingDir.push({ kind: 'rename', from, to, exit: sc.exit })
          })
          break
        }
        case 'link':
        case 'linkat':
        case 'mkdir':
        case 'mkdirat':
        case 'fallocate':
        case 'copy_file_range':
        case 'sendfile':
        case 'splice': {
          const touched = sc.args.some((x) => {
            try {
              if (x.startsWith('"')) return this.nameIn(path.resolve(this.cwd, decodeString(x).toString('latin1'))) !== undefined
              return /^\d+</.test(x) && this.isOurs(parseFdArg(x).path)
            } catch {
              return false
            }
          })
          if (touched && sc.ret >= 0) throw new Error(`trace line ${sc.entry + 1}: ${sc.name} on the log directory is not modeled`)
          break
        }
        case 'io_uring_setup':
          if (sc.ret >= 0) throw new Error('the writer set up io_uring: its file I/O is invisible to strace. Run it with UV_USE_IO_URING=0.')
          break
        case 'sync':
        case 'syncfs':
          throw new Error(`the writer called ${sc.name}: not modeled`)
        default:
          break
      }
    }
  }

  /** Advances the model to the state just before trace line `line` (monotonic). */
  advanceTo(line: number): void {
    if (line < this.appliedUpTo) throw new Error('crash points must be visited in increasing order')
    while (this.cursor < this.events.length && this.events[this.cursor].line < line) this.events[this.cursor++].run()
    this.appliedUpTo = line
  }

  /** Last line of the trace + 1: the state after everything. */
  get endLine(): number {
    return this.syscalls.length ? Math.max(...this.syscalls.map((s) => s.exit)) + 1 : 0
  }

  /** How much is undecided at the current point: unsynced pages and directory operations. */
  undecided(): number {
    let n = this.pendingDir.length
    for (const ino of new Set([...this.current.values(), ...this.durable.values()])) {
      const pages = new Set<number>()
      for (const m of ino.pending) {
        if (m.kind === 'write' && m.data.length > 0) for (let p = Math.floor(m.pos / PAGE); p <= Math.floor((m.pos + m.data.length - 1) / PAGE); p++) pages.add(p)
        else if (m.kind === 'trunc') n++
      }
      n += pages.size
    }
    return n
  }

  /** The directory as a power cut at the current point could leave it. */
  crash(rand: () => number, policy: Policy): CrashState {
    const notes: string[] = [`policy ${policy}`]
    const entries = new Map(this.durable)
    for (const op of this.pendingDir) {
      const keep = policy === 'keep' || (policy === 'random' && coin(rand))
      notes.push(`${keep ? 'kept' : 'lost'} unsynced dir op ${op.kind} ${op.kind === 'rename' ? `${op.from}->${op.to}` : op.name}`)
      if (keep) applyDirOp(entries, op)
    }
    const files = new Map<string, Buffer>()
    for (const [name, ino] of [...entries].sort((x, y) => (x[0] < y[0] ? -1 : 1))) {
      files.set(name, this.fileAfterCrash(name, ino, rand, policy, notes))
    }
    return { line: this.appliedUpTo, acks: this.ackLines.slice(), files, notes }
  }

  private fileAfterCrash(name: string, ino: Inode, rand: () => number, policy: Policy, notes: string[]): Buffer {
    if (ino.pending.length === 0) return Buffer.from(ino.synced)
    // Replay the unsynced mutations over the synced content, recording every content
    // each touched page goes through.
    let work: Buffer = Buffer.from(ino.synced)
    const versions = new Map<number, Buffer[]>()
    const snap = (page: number) => {
      const v = Buffer.alloc(PAGE)
      if (page * PAGE < work.length) work.copy(v, 0, page * PAGE, Math.min(work.length, (page + 1) * PAGE))
      let list = versions.get(page)
      if (!list) versions.set(page, (list = []))
      list.push(v)
    }
    for (const m of ino.pending) {
      const before = work.length
      work = applyMutation(work, m)
      if (m.kind === 'write') {
        if (m.data.length === 0) continue
        for (let p = Math.floor(m.pos / PAGE); p <= Math.floor((m.pos + m.data.length - 1) / PAGE); p++) snap(p)
      } else if (m.size < before) {
        for (let p = Math.floor(m.size / PAGE); p <= Math.floor((before - 1) / PAGE); p++) snap(p)
      }
    }
    const sizeChoice = policy === 'keep' ? 'last set' : policy === 'lose' ? 'synced' : coin(rand) ? 'last set' : 'synced'
    const size = sizeChoice === 'last set' ? work.length : ino.synced.length
    const out = Buffer.alloc(size)
    ino.synced.copy(out, 0, 0, Math.min(size, ino.synced.length))
    const kept: string[] = []
    for (const [page, list] of [...versions].sort((x, y) => x[0] - y[0])) {
      let pick = -1 // -1: the page as synced
      if (policy === 'keep') pick = list.length - 1
      else if (policy === 'random' && coin(rand)) pick = list.length === 1 || (rand() % 10) < 7 ? list.length - 1 : rand() % list.length
      if (pick < 0 || page * PAGE >= size) continue
      list[pick].copy(out, page * PAGE, 0, Math.min(PAGE, size - page * PAGE))
      kept.push(`${page}${list.length > 1 ? `@v${pick + 1}/${list.length}` : ''}`)
    }
    notes.push(`${name}: synced ${ino.synced.length} B, last set ${work.length} B, size ${sizeChoice} (${size}); unsynced pages [${[...versions.keys()].join(',')}], kept [${kept.join(',')}]`)
    return out
  }
}

function coin(rand: () => number): boolean {
  return (rand() & 0xffff) < 0x8000
}
