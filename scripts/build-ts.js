#!/usr/bin/env node
// Compiles lib/ to CommonJS (dist/cjs) and writes the thin ESM wrapper (dist/esm), which
// re-exports the CommonJS build so both module systems share one instance of every class
// (`err instanceof WalError` holds whichever way the caller loaded fastwal).
'use strict'
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const dist = path.join(root, 'dist')
fs.rmSync(dist, { recursive: true, force: true })
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' })
fs.writeFileSync(path.join(dist, 'cjs', 'package.json'), '{ "type": "commonjs" }\n')
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
