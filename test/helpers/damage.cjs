// Every kind of damage the corruption and truncation suites make to a log directory, as one
// catalogue: test/cli.test.ts runs `fastwal verify` on each (against the build), and the
// pack test runs it from the installed tarball. Plain CommonJS so both can load it.
// `kind`: 'clean' (verify exits 0) or the judgement verify must give the damage it finds:
// 'cuts it (torn tail)', 'refuses (WAL_CORRUPT)' or 'replay stops there (WAL_CORRUPT)'.
'use strict'
const fs = require('node:fs')
const path = require('node:path')

const SEGMENT_HEADER = 32
const RECORD_HEADER = 32

function segments(dir) {
  return fs.readdirSync(dir).filter((n) => /^\d{20}\.wal$/.test(n)).sort()
}

/** The path of segment `i` of `dir` (negative: counted from the last). */
function segmentPath(dir, i) {
  const s = segments(dir)
  return path.join(dir, s[i < 0 ? s.length + i : i])
}

/** [start, end) of each record in a segment's bytes, up to the first zero run or the end. */
function records(buf) {
  const out = []
  let at = SEGMENT_HEADER
  while (at + RECORD_HEADER <= buf.length) {
    const len = buf.readUInt32LE(at + 4)
    if (buf.readUInt32LE(at) === 0 && len === 0) break
    out.push([at, at + RECORD_HEADER + len])
    at += RECORD_HEADER + len
  }
  return out
}

function edit(file, fn) {
  fs.writeFileSync(file, fn(fs.readFileSync(file)))
}

function flip(file, offset) {
  edit(file, (b) => {
    b[offset] ^= 0x10
    return b
  })
}

/** Each: { name, kind, at(segs): the segment a finding must name (segs: before the damage), apply(dir) }. */
const DAMAGE = [
  {
    name: 'clean log',
    kind: 'clean',
    apply() {},
  },
  {
    name: 'preallocated zero tail after the last record',
    kind: 'clean',
    apply(dir) {
      fs.appendFileSync(segmentPath(dir, -1), Buffer.alloc(64 * 1024))
    },
  },
  {
    name: 'zeros after a finished segment, and a last segment left with only its header (a power cut after a rotation)',
    kind: 'clean',
    apply(dir) {
      fs.appendFileSync(segmentPath(dir, -2), Buffer.alloc(100 * 1024))
      fs.truncateSync(segmentPath(dir, -1), SEGMENT_HEADER)
    },
  },
  {
    name: 'last segment cut inside its last record (torn tail)',
    kind: 'cuts it (torn tail)',
    at: (segs) => segs[segs.length - 1],
    apply(dir) {
      const f = segmentPath(dir, -1)
      fs.truncateSync(f, fs.statSync(f).size - 7)
    },
  },
  {
    name: 'last segment cut inside its header (torn header)',
    kind: 'cuts it (torn tail)',
    at: (segs) => segs[segs.length - 1],
    apply(dir) {
      fs.truncateSync(segmentPath(dir, -1), 20)
    },
  },
  {
    name: 'garbage after the tail',
    kind: 'cuts it (torn tail)',
    at: (segs) => segs[segs.length - 1],
    apply(dir) {
      const junk = Buffer.alloc(300)
      for (let i = 0; i < junk.length; i++) junk[i] = (i * 131 + 7) & 0xff
      fs.appendFileSync(segmentPath(dir, -1), junk)
    },
  },
  {
    name: 'a zero run, then garbage, after the tail',
    kind: 'cuts it (torn tail)',
    at: (segs) => segs[segs.length - 1],
    apply(dir) {
      fs.appendFileSync(segmentPath(dir, -1), Buffer.concat([Buffer.alloc(200), Buffer.from('not a record, not zeros')]))
    },
  },
  {
    name: 'a stale copy of an earlier valid record after the tail',
    kind: 'cuts it (torn tail)',
    at: (segs) => segs[segs.length - 1],
    apply(dir) {
      const f = segmentPath(dir, -1)
      const b = fs.readFileSync(f)
      const [start, end] = records(b)[0]
      fs.appendFileSync(f, b.subarray(start, end))
    },
  },
  {
    name: 'a bit flipped in the last record of the last segment',
    kind: 'cuts it (torn tail)',
    at: (segs) => segs[segs.length - 1],
    apply(dir) {
      const f = segmentPath(dir, -1)
      const r = records(fs.readFileSync(f))
      flip(f, r[r.length - 1][0] + RECORD_HEADER + 1)
    },
  },
  {
    name: 'a bit flipped in an early record of the last segment (intact records after it)',
    kind: 'refuses (WAL_CORRUPT)',
    at: (segs) => segs[segs.length - 1],
    apply(dir) {
      const f = segmentPath(dir, -1)
      flip(f, records(fs.readFileSync(f))[0][0] + RECORD_HEADER + 1)
    },
  },
  {
    name: 'a bit flipped in a record of an older segment',
    kind: 'replay stops there (WAL_CORRUPT)',
    at: (segs) => segs[0],
    apply(dir) {
      const f = segmentPath(dir, 0)
      const r = records(fs.readFileSync(f))
      flip(f, r[Math.floor(r.length / 2)][0] + 9)
    },
  },
  {
    name: 'a bit flipped in the header of an older segment',
    kind: 'replay stops there (WAL_CORRUPT)',
    at: (segs) => segs[0],
    apply(dir) {
      flip(segmentPath(dir, 0), 10)
    },
  },
  {
    name: 'an older segment cut short',
    kind: 'replay stops there (WAL_CORRUPT)',
    at: (segs) => segs[0],
    apply(dir) {
      const f = segmentPath(dir, 0)
      fs.truncateSync(f, fs.statSync(f).size - 3)
    },
  },
  {
    name: 'a segment missing in the middle',
    kind: 'replay stops there (WAL_CORRUPT)',
    at: (segs) => segs[2],
    apply(dir) {
      fs.unlinkSync(segmentPath(dir, 1))
    },
  },
  {
    name: 'the segment before the last missing (the break is in the last segment)',
    kind: 'replay stops there (WAL_CORRUPT)',
    at: (segs) => segs[segs.length - 1],
    apply(dir) {
      fs.unlinkSync(segmentPath(dir, -2))
    },
  },
  {
    name: 'a last segment holding only its header, and the segment before it missing',
    kind: 'refuses (WAL_CORRUPT)',
    at: (segs) => segs[segs.length - 1],
    apply(dir) {
      fs.truncateSync(segmentPath(dir, -1), SEGMENT_HEADER)
      fs.unlinkSync(segmentPath(dir, -2))
    },
  },
]

module.exports = { DAMAGE, segments, records }
