// One cell of workload R, in a process of its own: load the library, open an existing
// store, read its first entry. Prints one JSON line of times (ms): `sinceStart` is from
// the process's own start (performance.timeOrigin) to the first entry in hand, what a
// restarting service waits for; `import`, `open` and `first` are its parts after Node's
// bootstrap. Usage: node bench/open-first.mjs <variant> <path>
import { performance } from 'node:perf_hooks'

const [variant, path] = process.argv.slice(2)
const t0 = performance.now()
let tImport, tOpen, first
if (variant === 'native' || variant === 'js') {
  const { WriteAheadLog } = await import('../dist/esm/index.mjs')
  tImport = performance.now()
  const wal = await WriteAheadLog.open(path, { backend: variant })
  tOpen = performance.now()
  const it = wal.replay({ from: 0 })
  first = (await it.next()).value?.lsn
  await it.return()
  performance.mark('first')
  await wal.close()
} else if (variant === 'sqlite') {
  const { default: Database } = await import('better-sqlite3')
  tImport = performance.now()
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  tOpen = performance.now()
  first = db.prepare('SELECT id FROM log ORDER BY id LIMIT 1').get()?.id
  performance.mark('first')
  db.close()
} else if (variant === 'lmdb') {
  const { open } = await import('lmdb')
  tImport = performance.now()
  const db = open({ path, encoding: 'binary' })
  tOpen = performance.now()
  for (const { key } of db.getRange({ limit: 1 })) first = key
  performance.mark('first')
  await db.close()
} else throw new Error(`unknown variant ${variant}`)
const tFirst = performance.getEntriesByName('first')[0].startTime
console.log(JSON.stringify({ first, sinceStart: tFirst, import: tImport - t0, open: tOpen - tImport, read: tFirst - tOpen, afterImport: tFirst - tImport }))
