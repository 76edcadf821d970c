#!/usr/bin/env node
// `npm run docs` runs TypeDoc (which refuses an undocumented public symbol: typedoc.json
// treats its warnings as errors), then this: every exported symbol, and every public
// method of an exported class, must carry an @example. Reads TypeDoc's JSON output.
'use strict'
const fs = require('node:fs')

const KIND = { Variable: 32, Function: 64, Class: 128, Interface: 256, Method: 2048, TypeAlias: 2097152 }
const project = JSON.parse(fs.readFileSync(process.argv[2] || 'api-docs/api.json', 'utf8'))

function hasExample(r) {
  const comments = [r.comment, ...(r.signatures ?? []).map((s) => s.comment)]
  return comments.some((c) => c?.blockTags?.some((t) => t.tag === '@example'))
}

const missing = []
let checked = 0
for (const mod of project.children ?? []) {
  for (const r of mod.children ?? []) {
    if (![KIND.Variable, KIND.Function, KIND.Class, KIND.Interface, KIND.TypeAlias].includes(r.kind)) continue
    checked++
    if (!hasExample(r)) missing.push(`${mod.name}.${r.name}`)
    if (r.kind !== KIND.Class) continue
    for (const m of r.children ?? []) {
      if (m.kind !== KIND.Method || m.flags?.isPrivate || m.flags?.isProtected || m.inheritedFrom) continue
      checked++
      if (!hasExample(m)) missing.push(`${mod.name}.${r.name}.${m.name}`)
    }
  }
}
if (missing.length > 0) {
  console.error(`check-api-docs: ${missing.length} public symbols without an @example:\n  ${missing.join('\n  ')}`)
  process.exit(1)
}
console.log(`check-api-docs: ${checked} public symbols and methods, each documented with an example`)
