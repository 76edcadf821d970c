// The `fastwal` command. Every command opens the log readOnly and never takes the lock.
// Arguments are parsed with node:util parseArgs; bad usage exits 2 with a message that
// says what to do, --help exits 0.
import * as fs from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { WalError } from './errors.js'
import { redact } from './redact.js'
import { WriteAheadLog } from './wal.js'

const USAGE: Record<string, string> = {
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

export { WalError }
