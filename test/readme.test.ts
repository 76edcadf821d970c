// The README's examples run as written: every ```js block is run with node in a fresh
// directory where `fastwal` resolves to this package (its built dist/).
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { tmpDir } from './helpers/util.js'

const ROOT = join(__dirname, '..')
const blocks = [...fs.readFileSync(join(ROOT, 'README.md'), 'utf8').matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1])

test('the README has runnable examples', () => {
  assert.ok(blocks.length >= 2, `found ${blocks.length} js blocks`)
})

blocks.forEach((code, i) => {
  test(`README example ${i + 1} runs as written (${code.split('\n')[0]})`, () => {
    const dir = tmpDir('readme')
    fs.mkdirSync(join(dir, 'node_modules'), { recursive: true })
    fs.symlinkSync(ROOT, join(dir, 'node_modules', 'fastwal'), 'dir')
    fs.writeFileSync(join(dir, 'example.js'), code)
    const out = execFileSync(process.execPath, ['example.js'], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
    assert.ok(out.length > 0, 'the example printed something')
  })
})

test.run()
