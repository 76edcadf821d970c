// The `fastwal` command. Every command opens the log readOnly and never takes the lock.
// Arguments are parsed with node:util parseArgs; bad usage exits 2 with a message that
// says what to do, --help exits 0.
import * as fs from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { WalError } from './errors.js'
import { redact } from './redact.js'
import { WriteAheadLog } from './wal.js'

const USAGE: Record<string, string> = {
  stat: `Usage: fastwal stat DIR [--json]

LSNs, the durable state, segments and bytes, cursors and their lag. Opens the log
readOnly: no lock, nothing changed; works while a writer runs.

  --json      one JSON object
  -h, --help`,
  verify: `Usage: fastwal verify DIR [--json]

Reads every segment and checks every record, batch and the segment chain, changing
nothing. Prints each damaged place (segment file, byte offset, what is wrong, what a
default open does about it). Exit 0 when clean, 1 when damage is found, 2 on bad usage.

  --json      one JSON object
  -h, --help`,
  dump: `Usage: fastwal dump DIR [--from N] [--to N] [--json]

One line per entry in LSN order: LSN, type, key, value (UTF-8 when valid, else 0x-hex).

  --from N    first LSN (inclusive; default firstLsn)
  --to N      last LSN (inclusive)
  --json      one JSON object per line; key and value base64
  -h, --help`,
  tail: `Usage: fastwal tail DIR [--from N] [--json]

dump, then every new durable entry as it is written, until interrupted.

  --from N    first LSN (default: the next one appended)
  --json      one JSON object per line; key and value base64
  -h, --help`,
  ship: `Usage: fastwal ship DIR --nats URL --stream NAME [options]

Ships the log in DIR into a NATS JetStream stream, one message per committed batch,
exactly once and in order, following the writer (another process) until SIGTERM/SIGINT.

  --nats URL          NATS server URL (repeat for a cluster)
  --stream NAME       the stream (created if missing)
  --subject S         default fastwal.<logId>
  --cursor C          the cursor kept at the shipped LSN; default jetstream
  --creds FILE        NATS credentials file (JWT + NKey seed)
  --user U            user name; the password from --password or FASTWAL_NATS_PASSWORD
  --password P        (visible to other users in the process list: prefer the variable)
  --token T           token; or FASTWAL_NATS_TOKEN
  --tls-ca FILE       CA certificate to verify the server with
  --tls-cert FILE     client certificate; with --tls-key FILE
  --tls-key FILE
  --progress-ms N     how often to print progress; default 5000
  -h, --help`,
}

const MAIN = `Usage: fastwal <command> DIR [options]

Commands:
  stat DIR                            positions, segments, cursors
  verify DIR                          check every record; exit 1 on damage
  dump DIR [--from N] [--to N]        entries, one per line
  tail DIR                            dump, then follow
  ship DIR --nats URL --stream NAME   ship the log into NATS JetStream (a sidecar)

Run fastwal <command> --help for a command's options.`

class UsageError extends Error {}

function parse(cmd: string, argv: string[], options: ParseArgsConfig['options']): { values: Record<string, string | string[] | boolean | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true })
    return { values: r.values as Record<string, string | string[] | boolean | undefined>, positionals: r.positionals }
  } catch (err) {
    throw new UsageError(`fastwal ${cmd}: ${(err as Error).message}`)
  }
}

/** Runs the command line; resolves with the exit code. */
export async function main(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  const [cmd, ...rest] = argv
  try {
    if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      out.write(MAIN + '\n')
      return cmd ? 0 : 2
    }
    if (cmd === 'ship') return await ship(rest, out, err)
    if (cmd === 'stat') return await stat(rest, out)
    if (cmd === 'verify') return await verify(rest, out)
    if (cmd === 'dump' || cmd === 'tail') return await dump(cmd, rest, out)
    throw new UsageError(`fastwal: unknown command '${cmd}'.`)
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`${e.message}\n${USAGE[cmd] ? `Run fastwal ${cmd} --help for usage.` : MAIN}\n`)
      return 2
    }
    err.write(`fastwal ${cmd}: ${redact(e instanceof Error ? e.message : String(e))}\n`)
    return 1
  }
}

async function ship(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const { values: v, positionals } = parse('ship', argv, {
    nats: { type: 'string', multiple: true },
    stream: { type: 'string' },
    subject: { type: 'string' },
    cursor: { type: 'string' },
    creds: { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string' },
    token: { type: 'string' },
    'tls-ca': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'progress-ms': { type: 'string' },
    backend: { type: 'string' },
  })
  if (v.help) {
    out.write(USAGE.ship + '\n')
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('fastwal ship: give exactly one log directory.')
  const nats = v.nats as string[] | undefined
  if (!nats || nats.length === 0) throw new UsageError('fastwal ship: --nats URL is required.')
  if (!v.stream) throw new UsageError('fastwal ship: --stream NAME is required.')
  const progressMs = v['progress-ms'] === undefined ? 5000 : Number(v['progress-ms'])
  if (!Number.isInteger(progressMs) || progressMs < 10) throw new UsageError('fastwal ship: --progress-ms must be an integer of at least 10.')
  if ((v['tls-cert'] === undefined) !== (v['tls-key'] === undefined)) throw new UsageError('fastwal ship: --tls-cert and --tls-key go together.')
  const backend = (v.backend ?? 'auto') as 'auto' | 'native' | 'js'
  const { shipToJetStream } = await import('./jetstream.js')
  const connection: Record<string, unknown> = {}
  const password = (v.password as string | undefined) ?? process.env.FASTWAL_NATS_PASSWORD
  const token = (v.token as string | undefined) ?? process.env.FASTWAL_NATS_TOKEN
  if (v.user) Object.assign(connection, { user: v.user, pass: password })
  if (token) connection.token = token
  if (v.creds) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { credsAuthenticator } = require('@nats-io/transport-node') as { credsAuthenticator(b: Uint8Array): unknown }
    connection.authenticator = credsAuthenticator(fs.readFileSync(v.creds as string))
  }
  if (v['tls-ca'] || v['tls-cert']) connection.tls = { caFile: v['tls-ca'], certFile: v['tls-cert'], keyFile: v['tls-key'] }
  const wal = await WriteAheadLog.open(positionals[0], { readOnly: true, backend })
  const shipper = await shipToJetStream(wal, {
    servers: nats,
    stream: v.stream as string,
    subject: v.subject as string | undefined,
    cursor: v.cursor as string | undefined,
    connection: connection as never,
    onError: (e) => err.write(`fastwal ship: ${e.message} (retrying)\n`),
  })
  let lastShipped = shipper.shippedLsn
  let lastPublished = 0
  let lastAt = Date.now()
  const timer = setInterval(() => {
    const s = shipper.stats()
    const now = Date.now()
    const rate = ((s.published - lastPublished) * 1000) / Math.max(1, now - lastAt)
    out.write(`fastwal ship: shipped LSN ${s.shippedLsn}, lag ${s.lagEntries} entries, ${rate.toFixed(1)} batches/s${s.errors ? `, ${s.errors} errors retried` : ''}\n`)
    lastShipped = s.shippedLsn
    lastPublished = s.published
    lastAt = now
  }, progressMs)
  void lastShipped
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve)
    process.once('SIGINT', resolve)
  })
  clearInterval(timer)
  await shipper.stop()
  out.write(`fastwal ship: stopped at LSN ${shipper.shippedLsn}\n`)
  await wal.close()
  return 0
}

function oneDir(cmd: string, positionals: string[]): string {
  if (positionals.length !== 1) throw new UsageError(`fastwal ${cmd}: give exactly one log directory.`)
  if (!fs.existsSync(positionals[0])) throw new UsageError(`fastwal ${cmd}: ${positionals[0]} does not exist.`)
  return positionals[0]
}

function lsnOption(cmd: string, name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`fastwal ${cmd}: --${name} must be a non-negative integer LSN; got ${String(v)}.`)
  return n
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)))
  return rows.map((r) => r.map((x, c) => (c === r.length - 1 ? x : x.padEnd(w[c]))).join('  ')).join('\n') + '\n'
}

async function stat(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values: v, positionals } = parse('stat', argv, { json: { type: 'boolean' } })
  if (v.help) return (out.write(USAGE.stat + '\n'), 0)
  const dir = oneDir('stat', positionals)
  const wal = await WriteAheadLog.open(dir, { readOnly: true })
  try {
    const s = wal.stats()
    const { listSegments } = await import('./segments.js')
    const { writerAlive } = await import('./verify.js')
    const segments = listSegments(wal.dir).map((g) => ({ name: g.name, firstLsn: g.firstLsn, bytes: fs.statSync(`${wal.dir}/${g.name}`).size }))
    const info = { dir: wal.dir, logId: wal.logId, writerRunning: writerAlive(wal.dir), lastLsn: s.lastLsn, durableLsn: s.durableLsn, firstLsn: s.firstLsn, checkpointLsn: s.checkpointLsn, segments, bytesOnDisk: segments.reduce((a, g) => a + g.bytes, 0), cursors: s.cursors }
    if (v.json) {
      out.write(JSON.stringify(info) + '\n')
      return 0
    }
    out.write(
      table([
        ['log', `${info.dir} (id ${info.logId || 'none yet'})`],
        ['writer', info.writerRunning ? 'running' : 'none'],
        ['LSNs', `first ${info.firstLsn}, last ${info.lastLsn}, durable ${info.durableLsn}, checkpoint ${info.checkpointLsn}`],
        ['disk', `${segments.length} segment(s), ${info.bytesOnDisk} bytes`],
      ]),
    )
    if (segments.length > 0) out.write('\n' + table([['segment', 'first LSN', 'bytes'], ...segments.map((g) => [g.name, String(g.firstLsn), String(g.bytes)])]))
    if (s.cursors.length > 0) out.write('\n' + table([['cursor', 'LSN', 'lag entries', 'lag bytes'], ...s.cursors.map((c) => [c.name, String(c.lsn), String(c.lagEntries), String(c.lagBytes)])]))
    return 0
  } finally {
    await wal.close()
  }
}

async function verify(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values: v, positionals } = parse('verify', argv, { json: { type: 'boolean' } })
  if (v.help) return (out.write(USAGE.verify + '\n'), 0)
  const dir = oneDir('verify', positionals)
  const { verifyLog } = await import('./verify.js')
  const { selectBackend } = await import('./open.js')
  const r = verifyLog(dir, selectBackend('auto'))
  if (v.json) out.write(JSON.stringify(r) + '\n')
  else {
    out.write(`${r.dir}: ${r.segments} segment(s), LSNs ${r.firstLsn}..${r.lastLsn}, ${r.entries} entries in ${r.batches} batches${r.live ? ' (a writer is running: the end of the last segment is read as a write in progress)' : ''}\n`)
    if (r.findings.length === 0) out.write('clean\n')
    else out.write(table([['segment', 'offset', 'damage', 'a default open'], ...r.findings.map((f) => [f.segment, String(f.offset), f.what, f.open])]))
  }
  return r.findings.length === 0 ? 0 : 1
}

function show(b: Buffer): string {
  const s = b.toString('utf8')
  return Buffer.from(s, 'utf8').equals(b) && !/[\u0000-\u001f\u007f]/.test(s) ? JSON.stringify(s) : '0x' + b.toString('hex')
}

async function dump(cmd: 'dump' | 'tail', argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const opts: ParseArgsConfig['options'] = { json: { type: 'boolean' }, from: { type: 'string' } }
  if (cmd === 'dump') opts.to = { type: 'string' }
  const { values: v, positionals } = parse(cmd, argv, opts)
  if (v.help) return (out.write(USAGE[cmd] + '\n'), 0)
  const dir = oneDir(cmd, positionals)
  const from = lsnOption(cmd, 'from', v.from)
  const to = lsnOption(cmd, 'to', v.to)
  const wal = await WriteAheadLog.open(dir, { readOnly: true })
  const ac = new AbortController()
  const stop = () => ac.abort(new Error('interrupted'))
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    const start = from ?? (cmd === 'tail' ? wal.durableLsn + 1 : 0)
    const it = cmd === 'tail' ? wal.follow({ from: start, signal: ac.signal }) : wal.replay({ from: start, signal: ac.signal })
    for await (const e of it) {
      if (to !== undefined && e.lsn > to) break
      if (v.json) out.write(JSON.stringify({ lsn: e.lsn, type: e.type, key: e.key.toString('base64'), value: e.value?.toString('base64') }) + '\n')
      else out.write(`${e.lsn} ${e.type} ${show(e.key)}${e.value ? ' ' + show(e.value) : ''}\n`)
    }
  } catch (e) {
    if (!ac.signal.aborted) throw e
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
    await wal.close()
  }
  return 0
}

export { WalError }
