#!/usr/bin/env node
// Compiles lib/ to CommonJS (dist/cjs) and writes the thin ESM wrapper (dist/esm), which
// re-exports the CommonJS build so both module systems share one instance of every class
// (`err instanceof WalError` holds whichever way the caller loaded fastwal).
//
// The JavaScript is then bundled into one file, dist/cjs/bundle.js: loading some 35 small
// modules cost ~5 ms more at start-up than one file (resolution, a read and a compile
// each). fastwal, fastwal/jetstream and the CLI are entry points of that one bundle, each
// initialised only when first required, so they share every module instance (one WalError
// class) and the NATS clients load only with fastwal/jetstream. The per-module .js files
// are removed after bundling; their .d.ts files stay as the types.
'use strict'
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const dist = path.join(root, 'dist')
fs.rmSync(dist, { recursive: true, force: true })
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' })
fs.writeFileSync(path.join(dist, 'cjs', 'package.json'), '{ "type": "commonjs" }\n')

const cjs = path.join(dist, 'cjs')
// Entry points by name; `internal` serves the bench (the addon loader, the pure-TS CRC).
const ENTRIES = {
  index: './index.js',
  jetstream: './jetstream.js',
  cli: './cli.js',
  internal: './bench-internal.js',
}
fs.writeFileSync(path.join(cjs, 'bench-internal.js'), "exports.loadAddon = require('./native-addon.js').loadAddon\nexports.crc32cJs = require('./crc32c.js').crc32cJs\n")
const entry = Object.entries(ENTRIES)
  .map(([name, file]) => `  get ${name}() { return require(${JSON.stringify(file)}) },`)
  .join('\n')
require('esbuild').buildSync({
  stdin: { contents: `module.exports = {\n${entry}\n}\n`, resolveDir: cjs, sourcefile: 'bundle-entry.js' },
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node18',
  external: ['@nats-io/*'], // optional peer dependencies, required at run time when used
  outfile: path.join(cjs, 'bundle.js'),
  legalComments: 'none',
  logLevel: 'warning',
})
for (const name of fs.readdirSync(cjs)) if (name.endsWith('.js') && name !== 'bundle.js') fs.rmSync(path.join(cjs, name))
for (const [name, file] of Object.entries(ENTRIES)) {
  if (name === 'internal') continue
  // Not `module.exports = require(...)`: Node's ESM loader would take that for a re-export
  // and lex the whole bundle for names (~25 ms); dist/esm imports the default export only.
  fs.writeFileSync(path.join(cjs, file), `'use strict'\nconst bundle = require('./bundle.js')\nmodule.exports = bundle.${name}\n`)
}
fs.mkdirSync(path.join(dist, 'esm'), { recursive: true })
fs.writeFileSync(path.join(dist, 'esm', 'package.json'), '{ "type": "module" }\n')
fs.writeFileSync(
  path.join(dist, 'esm', 'index.mjs'),
  "import cjs from '../cjs/index.js'\nexport const { WriteAheadLog, WalError, crc32c, decodeBatch } = cjs\nexport default cjs\n",
)
fs.writeFileSync(path.join(dist, 'esm', 'index.d.mts'), "export * from '../cjs/index.js'\n")
// fastwal/jetstream: loaded only when asked for (it loads the optional NATS clients).
fs.writeFileSync(path.join(dist, 'esm', 'jetstream.mjs'), "import cjs from '../cjs/jetstream.js'\nexport const { shipToJetStream, Shipper, redact } = cjs\nexport default cjs\n")
fs.writeFileSync(path.join(dist, 'esm', 'jetstream.d.mts'), "export * from '../cjs/jetstream.js'\n")
