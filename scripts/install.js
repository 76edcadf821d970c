#!/usr/bin/env node
// npm `install` hook: use a prebuilt binary when one matches this platform, else compile
// the addon from source with node-gyp (and say so). A failed compile is not fatal:
// backend 'auto' then falls back to the pure-TypeScript backend with a warning.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')
try {
  require('node-gyp-build')(root)
  process.exit(0)
} catch {
  // no prebuild and no local build: compile below
}
console.log('fastwal: no prebuilt binary for ' + process.platform + '-' + process.arch + '; building the native addon from source')
let gyp
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js')
} catch {
  gyp = null
}
const r = gyp
  ? spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: root, stdio: 'inherit' })
  : spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['exec', '--yes', '--', 'node-gyp', 'rebuild'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' })
if (r.status !== 0) {
  console.warn('fastwal: building the native addon failed; fastwal will use its pure-TypeScript backend (same format, slower). Install a C++ toolchain and python3, then run `npm rebuild fastwal`.')
}
