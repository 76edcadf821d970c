// The API reference: `npm run docs` builds it with TypeDoc, which refuses an undocumented
// public symbol (typedoc.json), and scripts/check-api-docs.js refuses one without an example.
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { tmpDir } from './helpers/util.js'

const ROOT = join(__dirname, '..')

test('npm run docs: every public symbol is documented with an example', () => {
  const out = execFileSync('npm', ['run', '--silent', 'docs'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  assert.match(out, /check-api-docs: \d+ public symbols and methods, each documented with an example/)
  assert.ok(fs.existsSync(join(ROOT, 'api-docs', 'classes', 'index.WriteAheadLog.html')))
})

test('the example check refuses a symbol without one', () => {
  const json = JSON.parse(fs.readFileSync(join(ROOT, 'api-docs', 'api.json'), 'utf8'))
  const wal = json.children.find((m: { name: string }) => m.name === 'index').children.find((r: { name: string }) => r.name === 'WriteAheadLog')
  const append = wal.children.find((m: { name: string }) => m.name === 'append')
  for (const sig of append.signatures) sig.comment.blockTags = []
  const file = join(tmpDir('api'), 'api.json')
  fs.mkdirSync(join(file, '..'), { recursive: true })
  fs.writeFileSync(file, JSON.stringify(json))
  let err: { status?: number; stderr?: string } | undefined
  try {
    execFileSync(process.execPath, [join(ROOT, 'scripts/check-api-docs.js'), file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (e) {
    err = e as typeof err
  }
  assert.is(err?.status, 1)
  assert.match(err?.stderr ?? '', /index\.WriteAheadLog\.append/)
})

test.run()
