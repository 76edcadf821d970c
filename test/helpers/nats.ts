// A nats-server of the test's own: a free loopback port, a temporary store directory,
// stopped by pid (also when the test fails: every server started is stopped at exit).
// Without a nats-server binary the NATS tests are skipped, and the run says so at its end;
// under CI=true that is a failure instead.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import { join } from 'node:path'
import { decodeBatch, type Batch } from '../../lib/index.js'
import { tmpDir } from './util.js'

function findServer(): string | undefined {
  for (const p of [process.env.NATS_SERVER, '/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server']) if (p && fs.existsSync(p)) return p
  const r = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() || undefined : undefined
}

export const NATS_SERVER = findServer()

const started = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

let skipped = 0
/** Whether NATS tests can run here; when they cannot, says so at the end of the run (and fails under CI). */
export function natsAvailable(what: string): boolean {
  if (NATS_SERVER) return true
  if (process.env.CI === 'true') throw new Error(`${what}: nats-server is not installed, and under CI=true the NATS tests must run. Install it: apt-get install -y nats-server`)
  if (skipped++ === 0)
    process.on('exit', () => process.stdout.write(`\nSKIPPED: ${skipped} JetStream test file(s) (no nats-server on this machine). Install it to run them: sudo apt-get install -y nats-server\n`))
  return false
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })
}

export interface NatsServer {
  url: string
  port: number
  storeDir: string
  /** Stops it by pid (SIGTERM, then SIGKILL after 5 s). */
  stop(): Promise<void>
  /** Stops it and starts it again on the same port and store. */
  restart(): Promise<void>
}

/** Starts nats-server with JetStream; `config` (nats-server config text) for auth/TLS. */
export async function startNats(opts: { config?: string; scheme?: string } = {}): Promise<NatsServer> {
  const port = await freePort()
  const storeDir = tmpDir('nats-store')
  fs.mkdirSync(storeDir, { recursive: true })
  let child: ChildProcess
  const args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir]
  if (opts.config) {
    const conf = join(storeDir, '..', `nats-${port}.conf`)
    fs.writeFileSync(conf, opts.config)
    args.push('-c', conf)
  }
  const launch = async (): Promise<void> => {
    child = spawn(NATS_SERVER!, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    started.add(child)
    let log = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start in 10 s:\n${log}`)), 10_000)
      child.stderr!.on('data', (d: Buffer) => {
        log += d.toString()
        if (/Server is ready/.test(log)) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.on('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`nats-server exited ${code}:\n${log}`))
      })
    })
    child.stderr!.resume()
  }
  const stop = async (): Promise<void> => {
    const c = child
    if (c.exitCode !== null || c.signalCode !== null) return
    const gone = new Promise<void>((r) => c.once('exit', () => r()))
    c.kill('SIGTERM')
    const t = setTimeout(() => c.kill('SIGKILL'), 5000)
    await gone
    clearTimeout(t)
    started.delete(c)
  }
  await launch()
  return {
    url: `${opts.scheme ?? 'nats'}://127.0.0.1:${port}`,
    port,
    storeDir,
    stop,
    restart: async () => {
      await stop()
      await launch()
    },
  }
}

/** Every message on `subject` of `stream`, in stream order. */
export async function streamMessages(url: string, stream: string, subject: string, connection: object = {}): Promise<{ seq: number; first: number; last: number; log: string; msgId: string; batch: Batch; body: Buffer }[]> {
  const { connect } = await import('@nats-io/transport-node')
  const { jetstreamManager } = await import('@nats-io/jetstream')
  const nc = await connect({ servers: url, ...connection })
  try {
    const jsm = await jetstreamManager(nc)
    const info = await jsm.streams.info(stream)
    const out = []
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null)
      if (!m || m.subject !== subject) continue
      const body = Buffer.from(m.data)
      out.push({ seq, first: Number(m.header.get('Fastwal-First')), last: Number(m.header.get('Fastwal-Last')), log: m.header.get('Fastwal-Log'), msgId: m.header.get('Nats-Msg-Id'), batch: decodeBatch(body), body })
    }
    return out
  } finally {
    await nc.close()
  }
}

