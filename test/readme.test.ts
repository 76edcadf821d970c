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

test('README links to shipped files work on the registry page: absolute, this version, a file the tarball holds', () => {
  const readme = fs.readFileSync(join(ROOT, 'README.md'), 'utf8')
  const pkg = JSON.parse(fs.readFileSync(join(ROOT, 'package.json'), 'utf8'))
  const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1])
  const relative = links.filter((l) => !/^(https?:|mailto:|#)/.test(l))
  assert.equal(relative, [], 'relative links break on the npm registry page (no repository to resolve against)')
  const shipped = links.filter((l) => l.startsWith('https://unpkg.com/'))
  assert.ok(shipped.length >= 3, `${shipped.length} links to shipped docs`)
  for (const l of shipped) {
    const m = /^https:\/\/unpkg\.com\/([^@/]+)@([^/]+)\/(.+)$/.exec(l)
    assert.ok(m, l)
    assert.is(m![1], pkg.name, l)
    assert.is(m![2], pkg.version, `${l}: run node scripts/readme-links.js`)
    assert.ok(fs.existsSync(join(ROOT, m![3])), `${l}: ${m![3]} exists`)
    assert.ok(pkg.files.some((f: string) => m![3].startsWith(f.replace(/\/$/, '') + '/') || f === m![3]), `${l}: ${m![3]} is in package.json files`)
  }
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
