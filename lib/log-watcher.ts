// Wakes the followers of a readOnly handle when the writer in another process changes
// the log: fs.watch on the directory (inotify, FSEvents, ReadDirectoryChangesW) for a
// rewritten DURABLE file and for segments created or deleted, plus a slow safety poll for
// file systems that report nothing (network mounts). It keeps the process alive only
// while a follower waits (like a server socket), not after.
import * as fs from 'node:fs'
import { DURABLE_FILE } from './durable-file.js'

const SAFETY_POLL_MS = 1000

export interface DirChange {
  /** A file appeared or disappeared (segment created, deleted or renamed): list the directory again. */
  listing: boolean
  /** A segment was written to (only of interest when the writer publishes no durable LSN). */
  segmentWrite?: boolean
}

export class LogWatcher {
  private watcher: fs.FSWatcher | undefined
  private poll: NodeJS.Timeout | undefined

  constructor(
    private readonly dir: string,
    private readonly onChange: (c: DirChange) => void,
  ) {}

  get running(): boolean {
    return this.poll !== undefined
  }

  /** Whether the watch keeps the process alive: yes while a follower waits. */
  keepAlive(on: boolean): void {
    if (on) {
      this.watcher?.ref()
      this.poll?.ref()
    } else {
      this.watcher?.unref()
      this.poll?.unref()
    }
  }

  start(): void {
    if (this.poll) return
    try {
      this.watcher = fs.watch(this.dir, { persistent: false }, (event, name) => {
        if (event === 'rename') this.onChange({ listing: true })
        // In-place writes: the durable LSN, or (for a writer that publishes none) records.
        else if (name === DURABLE_FILE) this.onChange({ listing: false })
        else if (name !== null && name.endsWith('.wal')) this.onChange({ listing: false, segmentWrite: true })
      })
      this.watcher.on('error', () => this.stopWatching())
    } catch {
      this.watcher = undefined // no watching here: the poll alone
    }
    this.poll = setInterval(() => this.onChange({ listing: true }), SAFETY_POLL_MS)
    this.poll.unref()
  }

  stop(): void {
    this.stopWatching()
    if (this.poll) clearInterval(this.poll)
    this.poll = undefined
  }

  private stopWatching(): void {
    this.watcher?.close()
    this.watcher = undefined
  }
}
