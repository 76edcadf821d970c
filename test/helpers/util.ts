import * as fs from 'node:fs'
import * as os from 'node:os'
import { join } from 'node:path'
import type { Backend } from '../../lib/backend.js'
import { jsBackend } from '../../lib/js-backend.js'
import { loadAddon } from '../../lib/native-addon.js'
import { nativeBackend } from '../../lib/native-backend.js'

export const BACKENDS = ['native', 'js'] as const
export type BackendName = (typeof BACKENDS)[number]

export function backendImpl(name: BackendName): Backend {
  if (name === 'js') return jsBackend
  const { addon, error } = loadAddon()
  if (!addon) throw new Error(`native addon not built: ${error?.message}`)
  return nativeBackend(addon)
}

let counter = 0
const root = fs.mkdtempSync(join(os.tmpdir(), 'fastwal-test-'))
process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }))

/** A fresh directory path (not created) under a per-process temp root. */
export function tmpDir(label = 'wal'): string {
  return join(root, `${label}-${process.pid}-${++counter}`)
}

export function segmentFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.wal')).sort()
}

export function lastSegment(dir: string): string {
  const s = segmentFiles(dir)
  return join(dir, s[s.length - 1])
}

export { prng, randomBytes } from './prng.js'
