// Counters behind stats(), and the diagnostics channels APM tools subscribe to:
//   fastwal:sync        { dir, durableLsn, groupSize, bytes, latencyUs }  after each completed data sync
//   fastwal:rotate      { dir, segment, prevLsn }                          a new segment was created
//   fastwal:checkpoint  { dir, lsn, deletedSegments, heldByCursors }      after checkpoint()
//   fastwal:recovery    { dir, mode, truncatedBytes, droppedEntries, droppedBatches }  at open, when something was removed
import diagnostics_channel from 'node:diagnostics_channel'

export const channels = {
  sync: diagnostics_channel.channel('fastwal:sync'),
  rotate: diagnostics_channel.channel('fastwal:rotate'),
  checkpoint: diagnostics_channel.channel('fastwal:checkpoint'),
  recovery: diagnostics_channel.channel('fastwal:recovery'),
}

/**
 * Latencies in microseconds, in buckets a quarter of a power of two wide (about 19%
 * resolution): recording and reading are O(1) in the number of samples.
 */
export class LatencyHistogram {
  private readonly counts = new Float64Array(4 * 40)
  private n = 0
  max = 0

  record(us: number): void {
    const v = Math.max(1, us)
    const b = Math.min(this.counts.length - 1, Math.floor(Math.log2(v) * 4))
    this.counts[b]++
    this.n++
    if (us > this.max) this.max = us
  }

  /** The upper edge of the bucket holding the p-th percentile (0 with no samples). */
  percentile(p: number): number {
    if (this.n === 0) return 0
    const rank = Math.ceil((p / 100) * this.n)
    let seen = 0
    for (let b = 0; b < this.counts.length; b++) {
      seen += this.counts[b]
      if (seen >= rank) return Math.round(Math.min(this.max, 2 ** ((b + 1) / 4)))
    }
    return Math.round(this.max)
  }
}

/** What the writer counts, for stats(). */
export class WriterCounters {
  appends = 0
  batches = 0
  bytesWritten = 0
  syncs = 0
  /** Syncs that committed appends or batches (a rotation's sync of a full segment may commit none). */
  groupSyncs = 0
  /** Appends and batches committed by those syncs, summed: / groupSyncs is the mean group size. */
  syncedGroups = 0
  maxGroupSize = 0
  rotations = 0
  bytesPreallocated = 0
  readonly syncLatency = new LatencyHistogram()

  /** A data sync covering `groupSize` waiting appends completed after `us` microseconds. */
  synced(groupSize: number, us: number): void {
    this.syncs++
    if (groupSize > 0) this.groupSyncs++
    this.syncedGroups += groupSize
    if (groupSize > this.maxGroupSize) this.maxGroupSize = groupSize
    this.syncLatency.record(us)
  }
}
