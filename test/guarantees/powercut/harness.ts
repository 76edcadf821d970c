// What the power-cut tests share besides the model (sim.ts): running a child under strace,
// writing a crash state to disk, the directory the states are opened in.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { tmpDir } from '../../helpers/util.js'
import { TRACED_SYSCALLS, type CrashState } from './sim.js'

export const FAIL_ROOT = '/tmp/fastwal-powercut-failures'

export function requireStrace(): void {
  const r = spawnSync('strace', ['-V'], { encoding: 'utf8' })
  if (r.error || r.status !== 0) {
    throw new Error(
      'The power-cut test needs strace to record the writer\'s syscalls, and it is not available ' +
        `(${r.error?.message ?? r.stderr}). Install it: apt-get install strace (Debian/Ubuntu), ` +
        'dnf install strace (Fedora), apk add strace (Alpine). In a container, ptrace must be allowed.',
    )
  }
}

/**
 * Runs `node -r tsx/cjs <script> <args>` under strace, writing the trace to `traceFile`.
 * Returns the child's stdout; throws with its stderr when it fails.
 */
export function runUnderStrace(script: string, args: string[], traceFile: string, what: string): string {
  const r = spawnSync(
    'strace',
    [
      '-f', '-qq', '-y', '-xx', '-s', String(16 << 20), '-o', traceFile,
      '-e', 'trace=' + TRACED_SYSCALLS.map((s) => '?' + s).join(','),
      process.execPath, '-r', require.resolve('tsx/cjs'), script, ...args,
    ],
    {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      timeout: 120_000,
      // libuv's io_uring would do file I/O that strace cannot see.
      env: { ...process.env, UV_USE_IO_URING: '0' },
    },
  )
  if (r.error) throw new Error(`running the ${what} under strace failed: ${r.error.message}`)
  if (r.status !== 0) {
    throw new Error(
      `the ${what} under strace exited with ${r.status ?? r.signal}:\n${r.stderr}\n` +
        '(if strace reports "Operation not permitted", ptrace is blocked: run with CAP_SYS_PTRACE or kernel.yama.ptrace_scope=0)',
    )
  }
  return r.stdout
}

/** Writes a crash state's files to `dir` (emptied first). */
export function writeState(dir: string, st: Pick<CrashState, 'files'>): void {
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  for (const [name, data] of st.files) {
    // The lock file's content is irrelevant (the native lock is flock); keep only its entry.
    fs.writeFileSync(join(dir, name), name === 'LOCK' ? Buffer.alloc(0) : data)
  }
}

let stateRootDir: string | undefined
/**
 * Where crash states are opened: tmpfs when there is one (/dev/shm), as fsync there is
 * free and the tests open, append to and close each state several times; the bytes and
 * the library's syscalls are the same on any file system.
 */
export function stateRoot(): string {
  if (stateRootDir) return stateRootDir
  try {
    stateRootDir = fs.mkdtempSync('/dev/shm/fastwal-powercut-')
  } catch {
    stateRootDir = tmpDir('powercut-states')
    fs.mkdirSync(stateRootDir, { recursive: true })
  }
  const dir = stateRootDir
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A trace line with its \x.. runs shown as text, for reports. */
export function decodeHex(line: string): string {
  return line.replace(/(?:\\x[0-9a-f]{2})+/g, (m) => JSON.stringify(Buffer.from(m.replace(/\\x/g, ''), 'hex').toString('latin1')).slice(1, -1))
}
