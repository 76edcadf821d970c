#!/usr/bin/env node
// npm `install` hook. Uses the prebuilt binary in prebuilds/<platform>-<arch>/ when one
// matches this machine and loads; compiles the addon from source with node-gyp only when
// none does (and says so), or when a source build is forced:
//   FASTWAL_BUILD_FROM_SOURCE=1 npm install fastwal        (or: npm rebuild fastwal)
//   npm install fastwal --build-from-source                (the node-gyp-build convention)
// An unforced compile that fails is not fatal: backend 'auto' then falls back to the
// pure-TypeScript backend with a warning. A forced one that fails exits non-zero.
// npm hides the output of install scripts unless they fail; `--foreground-scripts` shows it.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const target = process.platform + '-' + process.arch

function forced() {
  const env = process.env.FASTWAL_BUILD_FROM_SOURCE
  if (env && env !== '0' && env !== 'false') return true
  // `--build-from-source` (all packages) or `--build-from-source=fastwal` (this one).
  const npmFlag = process.env.npm_config_build_from_source
  return npmFlag === 'true' || (typeof npmFlag === 'string' && npmFlag.split(',').includes('fastwal'))
}

function nodeGyp() {
  // 1. The devDependency (a source checkout). 2. The node-gyp that npm bundles and names in
  // npm_config_node_gyp for lifecycle scripts. 3. Fetch it with `npm exec`.
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')]
  } catch {
    // not installed alongside
  }
  const bundled = process.env.npm_config_node_gyp
  if (bundled && fs.existsSync(bundled)) return /\.js$/.test(bundled) ? [process.execPath, bundled] : [bundled]
  return [process.platform === 'win32' ? 'npm.cmd' : 'npm', 'exec', '--yes', '--', 'node-gyp']
}

const force = forced()
if (!force) {
  try {
    require('node-gyp-build')(root)
    process.exit(0)
  } catch (err) {
    const why = String((err && err.message) || err).split('\n')[0]
    console.log('fastwal: no usable prebuilt binary for ' + target + ' (' + why + '); building the native addon from source with node-gyp')
  }
} else {
  console.log('fastwal: source build forced (FASTWAL_BUILD_FROM_SOURCE / --build-from-source); building the native addon with node-gyp')
}

const [cmd, ...args] = nodeGyp()
const r = spawnSync(cmd, [...args, 'rebuild'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' && !cmd.endsWith('.exe') })
if (r.status === 0) {
  console.log('fastwal: built the native addon from source (build/Release/fastwal.node)')
  process.exit(0)
}
const needs = 'a C++17 compiler, make and python3 (Windows: Visual Studio Build Tools and Python)'
if (force) {
  console.error('fastwal: the forced source build failed; it needs ' + needs + '. Unset FASTWAL_BUILD_FROM_SOURCE / --build-from-source to use the prebuilt binary.')
  process.exit(1)
}
console.warn(
  'fastwal: building the native addon failed; fastwal will use its pure-TypeScript backend (same format, slower). ' +
    'Install ' + needs + ', then run `npm rebuild fastwal`.',
)
