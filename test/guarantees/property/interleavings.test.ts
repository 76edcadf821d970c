// Model-checking property test: random interleavings of append / appendBatch /
// appendSync / appendBatchSync / sync / checkpoint / replay / replayBatches / replaySync /
// close / closeSync / reopen, with tiny segments, on both backends, against the model in
// ./model.ts: every acknowledged entry above the checkpoint replays once, in order, whole
// batches; LSNs are never reused; lastLsn / durableLsn / checkpointLsn / firstLsn agree.
//
//   CI (default): FASTWAL_PROPERTY_RUNS runs per backend (default 150, ~12-20 s each), a fresh seed each time.
//   Long:         FASTWAL_PROPERTY_SECONDS=600 npx uvu -r tsx/cjs test/guarantees/property 'interleavings\.test\.ts$'
//                 fresh seeds until the wall time is spent (split between the backends),
//                 every finding printed (seed, path, shrunk op list) and counted.
//   Reproduce:    FASTWAL_PROPERTY_SEED=<seed> FASTWAL_PROPERTY_PATH=<path> FASTWAL_PROPERTY_BACKEND=js ...
//   or:           FASTWAL_PROPERTY_REPRO='[{"backend":"js",...},[{"t":"put",...},...]]' (one scenario)
//   Other knobs:  FASTWAL_PROPERTY_NO_SHRINK=1, FASTWAL_PROPERTY_SHRINK_SECONDS (default 90),
//                 FASTWAL_PROPERTY_BACKEND=native|js, FASTWAL_PROPERTY_EXCLUDE=consume,mid-checkpoint,...
import fc from 'fast-check'
import { test } from 'uvu'
import { BACKENDS, tmpDir, type BackendName } from '../../helpers/util.js'
import { runScenario, type Config, type From, type Kind, type Mode, type Op } from './model.js'

const env = process.env
const SECONDS = Number(env.FASTWAL_PROPERTY_SECONDS ?? 0)
const RUNS = Number(env.FASTWAL_PROPERTY_RUNS ?? 150)
const SEED = env.FASTWAL_PROPERTY_SEED !== undefined ? Number(env.FASTWAL_PROPERTY_SEED) : undefined
const PATH = env.FASTWAL_PROPERTY_PATH
const NO_SHRINK = env.FASTWAL_PROPERTY_NO_SHRINK === '1'
const ONLY = env.FASTWAL_PROPERTY_BACKEND as BackendName | undefined
// Leave op kinds out (comma-separated `t` values, or `mid-checkpoint`: mid-iteration
// checkpoints only up to what the iterator has yielded) or checks (`close-listing`: the
// segment files do not change after close returns), to look past a known finding.
const EXCLUDE = new Set((env.FASTWAL_PROPERTY_EXCLUDE ?? '').split(',').filter(Boolean))
const RUN_TIMEOUT_MS = 60_000 // a hang (e.g. a checkpoint waiting on its own iterator) is a finding
const SHRINK_MS = Number(env.FASTWAL_PROPERTY_SHRINK_SECONDS ?? 90) * 1000

// --- arbitraries -------------------------------------------------------------------------

const seedArb = fc.integer({ min: 1, max: 0x7fffffff })
const modeArb: fc.Arbitrary<Mode> = fc.oneof(
  { weight: 3, arbitrary: fc.constant('async' as const) },
  { weight: 1, arbitrary: fc.constant('await' as const) },
  { weight: 2, arbitrary: fc.constant('sync' as const) },
)
// Mostly small records; sometimes ones that fill a good part of a 4 KiB segment.
const sizeArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 64 }) },
  { weight: 2, arbitrary: fc.integer({ min: 65, max: 600 }) },
  { weight: 1, arbitrary: fc.integer({ min: 601, max: 3000 }) },
)
const fracArb = fc.double({ min: 0, max: 1, noNaN: true })
const atArb = fc.oneof(fc.constant(1), fc.constant(0), fracArb)
const fromArb: fc.Arbitrary<From> = fc.oneof(fc.constant('default' as const), fc.constant('zero' as const), fracArb)
const kindArb: fc.Arbitrary<Kind> = fc.constantFrom('entries' as const, 'batches' as const, 'sync' as const)

const opArbs: { weight: number; arbitrary: fc.Arbitrary<Op> }[] = [
  { weight: 10, arbitrary: fc.record({ t: fc.constant('put' as const), mode: modeArb, size: sizeArb, seed: seedArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('put' as const), mode: modeArb, size: fc.constant(0), seed: seedArb, del: fc.constant(true as const) }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('batch' as const), mode: modeArb, n: fc.integer({ min: 1, max: 8 }), size: sizeArb, seed: seedArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('fill' as const),
      mode: modeArb,
      n: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 100, max: 300 })),
      size: fc.integer({ min: 0, max: 48 }),
      seed: seedArb,
    }),
  },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('settle' as const), all: fc.boolean(), pick: fracArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('sync' as const), await: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('checkpoint' as const), at: atArb, await: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('consume' as const), kind: fc.constantFrom('entries' as const, 'batches' as const) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('replay' as const), kind: kindArb, from: fromArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('mid' as const),
      kind: kindArb,
      from: fromArb,
      take: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 6, max: 200 })),
      at: fc.oneof(fc.constant(-1), atArb), // -1: the last LSN yielded so far
      appends: fc.integer({ min: 0, max: 6 }),
      end: fc.constantFrom('continue' as const, 'continue' as const, 'abandon' as const, 'return' as const),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('reopen' as const),
      closeSync: fc.boolean(),
      openSync: fc.boolean(),
      change: fc.option(
        fc.record(
          {
            sync: fc.constantFrom('always' as const, 'interval' as const, 'none' as const),
            backend: fc.constantFrom('native' as const, 'js' as const),
            preallocate: fc.boolean(),
            segmentSize: fc.constantFrom(4096, 8192),
          },
          { requiredKeys: [] },
        ),
        { nil: undefined },
      ),
    }),
  },
]
const opArb: fc.Arbitrary<Op> = fc
  .oneof(...opArbs)
  .filter((op) => !EXCLUDE.has(op.t))
  .map((op) => (op.t === 'mid' && EXCLUDE.has('mid-checkpoint') ? { ...op, at: -1 } : op))

const configArb = (backend: BackendName): fc.Arbitrary<Config> =>
  fc.record({
    backend: fc.constant(backend),
    sync: fc.constantFrom('always' as const, 'interval' as const, 'none' as const),
    syncIntervalMs: fc.integer({ min: 1, max: 20 }),
    preallocate: fc.boolean(),
    segmentSize: fc.oneof({ weight: 4, arbitrary: fc.constant(4096) }, { weight: 1, arbitrary: fc.constant(8192) }),
  })

const scenarioArb = (backend: BackendName) => fc.tuple(configArb(backend), fc.array(opArb, { minLength: 1, maxLength: 40, size: 'max' }))

// Fixed scenarios, each the smallest case of one rule, run first (as fast-check examples)
// on both backends. Each comment says the rule and how breaking it shows.
const tiny = { sync: 'always', syncIntervalMs: 1, preallocate: false, segmentSize: 4096 } as const
const fill = (mode: Mode, n = 100): Op => ({ t: 'fill', mode, n, size: 0, seed: 1 }) // 100 small records: 2 segments of 4 KiB
const FINDINGS: [Omit<Config, 'backend'>, Op[]][] = [
  // 1. A checkpoint past a partially consumed iterator does not delete segments it still
  //    has to read (else the iterator silently skips LSNs 94..188).
  [tiny, [fill('sync', 200), { t: 'mid', kind: 'entries', from: 'zero', take: 1, at: 1, appends: 0, end: 'continue' }]],
  // 2. replaySync while un-awaited appends that crossed a rotation are on the thread pool
  //    reads a consistent log (else WAL_CORRUPT "Segment continues after LSN 93 but the
  //    segment before it ends at LSN 0").
  [tiny, [fill('async'), { t: 'replay', kind: 'sync', from: 'zero' }]],
  // 3. replay({ from: 0 }) right after `for await (e of replay()) await checkpoint(e.lsn)`
  //    starts at the first retained segment (else WAL_GONE "segment ... which replay still
  //    had to read, was deleted").
  [tiny, [fill('sync'), { t: 'consume', kind: 'entries' }, { t: 'replay', kind: 'entries', from: 'zero' }]],
  // 4. The same consumer loop on 8 KiB segments: a segment that grew after replay opened it
  //    is measured again, and a zero CRC byte at the end of a chunk is not taken for a
  //    zero-filled tail (else WAL_CORRUPT "Zeroed bytes before later data").
  [{ ...tiny, segmentSize: 8192 }, [fill('sync'), { t: 'consume', kind: 'entries' }]],
  // 5. Segments an abandoned iterator keeps from a checkpoint count in firstLsn, and
  //    replay({ from: 0 }) starts at firstLsn (else firstLsn says 94 while replay starts
  //    at 1, or replay({ from: 1 }) is WAL_GONE).
  [tiny, [fill('sync', 150), { t: 'mid', kind: 'entries', from: 'zero', take: 1, at: 1, appends: 0, end: 'abandon' }, { t: 'replay', kind: 'entries', from: 'zero' }]],
  // 6. replay() (default from) started while checkpoint(lastLsn) is still in flight is not
  //    WAL_GONE ("Entries from LSN 1 were asked for, but a checkpoint has deleted the entries before it").
  [tiny, [fill('sync', 150), { t: 'checkpoint', at: 1, await: false }, { t: 'replay', kind: 'entries', from: 'default' }]],
  // 7. close() deletes the segments an abandoned iterator held back before it resolves and
  //    releases the lock (else "segments changed after close() returned: [1.wal,94.wal] then
  //    [94.wal]", and when the next handle opens first, its replay({ from: 0 }) throws
  //    WAL_GONE: firstLsn 1, segment 1 gone). Timing-dependent (about 1 run in 2).
  [tiny, [fill('sync'), { t: 'mid', kind: 'entries', from: 'default', take: 1, at: 1, appends: 0, end: 'abandon' }, { t: 'reopen', closeSync: false, openSync: false }, { t: 'replay', kind: 'entries', from: 'zero' }]],
  // 8. The same for closeSync(), after an iterator that a checkpoint had to wait for ran to
  //    its end over two freed segments: both are deleted before closeSync() returns (else
  //    "segments changed after closeSync() returned: [94.wal,189.wal] then [189.wal]").
  //    Deterministic, both backends, replay and replaySync.
  [tiny, [fill('sync', 200), { t: 'mid', kind: 'entries', from: 0, take: 2, at: 1, appends: 0, end: 'continue' }, { t: 'reopen', closeSync: true, openSync: false }]],
]
const REGRESSIONS: [Config, Op[]][] = FINDINGS.flatMap(([c, ops]) => BACKENDS.map((backend): [Config, Op[]] => [{ backend, ...c }, ops]))

const totals = { runs: 0, ops: 0, appended: 0, checkpoints: 0, replays: 0, reopens: 0 }

function property(backend: BackendName) {
  return fc.asyncProperty(scenarioArb(backend), async ([cfg, ops]) => {
    const r = await runScenario(tmpDir(`interleave-${backend}`), cfg, ops, { skip: EXCLUDE })
    totals.runs++
    totals.ops += ops.length
    totals.appended += r.appended
    totals.checkpoints += r.checkpoints
    totals.replays += r.replays
    totals.reopens += r.reopens
  })
}

function totalsLine(): string {
  const t = { ...totals }
  for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] = 0
  return `${t.runs} passing scenarios: ${t.ops} ops, ${t.appended} entries appended, ${t.checkpoints} checkpoints, ${t.replays} replays, ${t.reopens} reopens`
}

function examplesFor(backend: BackendName): [[Config, Op[]]][] {
  return REGRESSIONS.filter(([c]) => c.backend === backend).map((r) => [r])
}

function report(details: fc.RunDetails<[[Config, Op[]]]>): string {
  return fc.defaultReportMessage(details) ?? `failed after ${details.numRuns} runs (seed ${details.seed}, path ${details.counterexamplePath})`
}

/** A failure's first line with numbers and paths blanked: equal for the same bug. */
function signature(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err)
  return msg
    .split('\n')[0]
    .replace(/\/tmp\/\S+/g, '<dir>')
    .replace(/\S+\.wal\b/g, '<seg>')
    .replace(/key=\S+ value=\S+/g, '…')
    .replace(/\d+(\.\d+)?(e-?\d+)?/g, 'N')
    .slice(0, 300)
}

const backends = BACKENDS.filter((b) => !ONLY || b === ONLY)

const REPRO = env.FASTWAL_PROPERTY_REPRO

if (REPRO) {
  // One scenario given as JSON `[config, ops]` (a counterexample as printed, `__proto__:null,` removed).
  test('repro: FASTWAL_PROPERTY_REPRO', async () => {
    const [cfg, ops] = JSON.parse(REPRO.replace(/__proto__:null,?/g, '')) as [Config, Op[]]
    const r = await runScenario(tmpDir(`interleave-repro`), cfg, ops)
    console.log(`passed: ${JSON.stringify(r)}`)
  })
} else if (SECONDS > 0) {
  // Long mode: fresh seeds until the time is spent. A failure is first found without
  // shrinking; only one whose message is new (digits and paths aside) is then replayed
  // (same seed and path) and shrunk, so a frequent known finding does not eat the time.
  test(`random interleavings for ${SECONDS}s with fresh seeds (${backends.join(', ')})`, async () => {
    const findings = new Map<string, { backend: BackendName; seeds: number[]; text: string }>()
    const aliases = new Map<string, string>() // unshrunk signature -> shrunk one
    const perBackend = (SECONDS * 1000) / backends.length
    for (const backend of backends) {
      const deadline = Date.now() + perBackend
      let runs = 0
      let rounds = 0
      while (Date.now() < deadline) {
        const seed = (Math.random() * 0x7fffffff) | 0
        const base = { seed, timeout: RUN_TIMEOUT_MS, includeErrorInReport: true }
        const details = await fc.check(property(backend), { ...base, numRuns: 20, endOnFailure: true, examples: rounds === 0 ? examplesFor(backend) : [] })
        rounds++
        runs += details.numRuns
        const ran = totalsLine()
        let note = ''
        if (details.failed) {
          const sig = `${backend}: ${signature(details.errorInstance)}`
          const known = findings.get(aliases.get(sig) ?? sig)
          if (known) {
            known.seeds.push(seed)
            note = ` — FAILED again: ${sig}`
          } else {
            // Shrinking a timing-dependent failure can take long: it stops after SHRINK_MS with the smallest case so far.
            const shrunk = NO_SHRINK ? details : await fc.check(property(backend), { ...base, path: details.counterexamplePath ?? undefined, numRuns: 1, interruptAfterTimeLimit: SHRINK_MS })
            const final = shrunk.failed ? shrunk : details
            const finalSig = `${backend}: ${signature(final.errorInstance)}`
            aliases.set(sig, finalSig)
            const same = findings.get(finalSig)
            if (same) {
              same.seeds.push(seed)
              note = ` — FAILED, shrinks to a known finding: ${finalSig}`
            } else {
              const text = report(final) + (final.interrupted ? `\n(shrinking stopped after ${SHRINK_MS / 1000} s)` : '')
              findings.set(finalSig, { backend, seeds: [seed], text })
              console.log(`\n[${backend}] NEW FINDING with seed ${seed}:\n${text}\n`)
              note = ` — FAILED (new): ${finalSig}`
            }
            totalsLine()
          }
        }
        console.log(`[${backend}] seed ${seed}: ${ran}${note} (total ${runs} runs, ${findings.size} distinct findings, ${Math.max(0, Math.round((deadline - Date.now()) / 1000))}s left)`)
      }
      console.log(`[${backend}] done: ${runs} runs in ${rounds} rounds`)
    }
    if (findings.size > 0) {
      const list = [...findings].map(([sig, f]) => `- ${sig}\n  seeds ${f.seeds.join(', ')}\n  ${f.text.replace(/\n/g, '\n  ')}`)
      throw new Error(`${findings.size} distinct finding(s):\n${list.join('\n')}`)
    }
  })
} else {
  for (const backend of backends) {
    test(`${backend}: random interleavings of appends, syncs, checkpoints, replays and reopens with tiny segments match the model`, async () => {
      const seed = SEED ?? (Math.random() * 0x7fffffff) | 0
      const details = await fc.check(property(backend), {
        numRuns: RUNS,
        seed,
        path: PATH,
        timeout: RUN_TIMEOUT_MS,
        interruptAfterTimeLimit: SHRINK_MS + 120_000, // runs take ~20 s; this bounds shrinking
        includeErrorInReport: true,
        endOnFailure: NO_SHRINK,
        examples: PATH ? [] : examplesFor(backend),
      })
      console.log(`[${backend}] seed ${seed}: ${totalsLine()}${details.interrupted ? ' (stopped by the time limit)' : ''}`)
      if (details.failed) throw new Error(`[${backend}] ${report(details)}`)
    })
  }
}

test.run()
