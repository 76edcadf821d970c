#!/usr/bin/env node
// README links to the docs that ship in the package point at the published files of this
// version (unpkg serves every file of a published tarball), so they work on the npm
// registry page, where relative links have no repository to resolve against. Run by
// `npm version` (the "version" script) after the bump; `--check` only reports.
'use strict'
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const { name, version } = require(path.join(root, 'package.json'))
const file = path.join(root, 'README.md')
const text = fs.readFileSync(file, 'utf8')
const base = `https://unpkg.com/${name}@`
const re = new RegExp(`${base.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}[^/]+/`, 'g')
const out = text.replace(re, `${base}${version}/`)
if (process.argv.includes('--check')) {
  if (out !== text) {
    console.error(`README.md links name another version than ${version}; run node scripts/readme-links.js`)
    process.exit(1)
  }
} else if (out !== text) fs.writeFileSync(file, out)
