// What users meet first (lib/wal.ts, lib/options.ts): console.log(wal) is short and says
// what matters; dir may be a file: URL; under sync 'none' an appendSync followed by
// process.exit() is kept (staged bytes are handed to the OS at exit).
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { inspect } from 'node:util'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WriteAheadLog } from '../lib/index.js'
import { tmpDir } from './helpers/util.js'

const ROOT = join(__dirname, '..')

test('console.log(wal) shows dir, backend, state and positions in a few lines', async () => {
  const dir = tmpDir()
  const wal = await WriteAheadLog.open(pathToFileURL(dir), { segmentSize: 4096 })
  assert.is(wal.dir, dir, 'a file: URL dir is the same directory')
  await wal.append({ type: 'put', key: 'a', value: 'b' })
  const shown = inspect(wal)
  assert.ok(shown.split('\n').length <= 12, shown)
  assert.match(shown, /^WriteAheadLog \{/)
  assert.match(shown, /state: 'open'/)
  assert.match(shown, /lastLsn: 1/)
  assert.ok(shown.includes(dir))
  await wal.close()
  assert.match(inspect(wal), /state: 'closed'/)
  let code = ''
  try {
    await WriteAheadLog.open(new URL('http://example.com/wal'))
  } catch (e) {
    code = (e as { code: string }).code
  }
  assert.is(code, 'WAL_INVALID')
})

test("appendSync under sync 'none', then process.exit(): the entry is kept", async () => {
  const dir = tmpDir()
  const code = `const { WriteAheadLog } = require(${JSON.stringify(join(ROOT, 'dist/cjs/index.js'))}); const w = WriteAheadLog.openSync(${JSON.stringify(dir)}, { sync: 'none', preallocate: false }); for (let i = 0; i < 5; i++) w.appendSync({ type: 'put', key: 'k' + i, value: 'v' }); process.exit(0)`
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' })
  assert.is(r.status, 0, r.stderr)
  const wal = await WriteAheadLog.open(dir, { readOnly: true })
  assert.equal([...wal.replaySync({ from: 0 })].map((e) => e.key.toString()), ['k0', 'k1', 'k2', 'k3', 'k4'])
  await wal.close()
})

test.run()
