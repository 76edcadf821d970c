// What a readOnly handle reads: the log as it is on disk, listed again as readers start
// and as followers wake, so records and segments another process writes after the open
// are seen. Nothing is repaired: segments that recovery at open judged not part of the
// log (dropped by a point-in-time cut, a torn header, remnants of an interrupted repair)
// stay out of view, and bytes after a cut stay unread. The last segment is read "live"
// (record-reader.ts): a torn tail there is where the written bytes end.
import type { Backend } from './backend.js'
import { readDurable } from './durable-file.js'
import { SEGMENT_HEADER_SIZE } from './format.js'
import type { TailPlan } from './recovery.js'
import type { Remnants } from './repair.js'
import { listSegments, type SegmentRef } from './segments.js'

export class ReadOnlyView {
  /** Highest LSN known to be in the log. */
  lastLsn: number
  /** What the writer published as durable; without a publishing writer, what open found. */
  durableLsn: number
  /** A writer publishes its durable LSN (DURABLE exists). */
  published: boolean
  readonly checkpointLsn: number
  /** Segments in view, oldest first. */
  segments: SegmentRef[]
  private readonly gone: Set<string>
  /** Bytes known to hold the log's records, for segments that open cut at damage. */
  private readonly limits = new Map<string, number>()

  constructor(
    private readonly dir: string,
    private readonly backend: Backend,
    segments: SegmentRef[],
    plan: TailPlan,
    remnants: Remnants | undefined,
  ) {
    const gone = [...(plan.dropSegments ?? []), ...(plan.deleteSegment ? [plan.deleteSegment] : []), ...(remnants?.orphans ?? [])]
    this.gone = new Set(gone.map((s) => s.name))
    const last = segments[segments.length - 1]
    if (plan.segment && plan.segment !== last) this.limits.set(plan.segment.name, plan.validEnd)
    if (remnants?.predecessor) this.limits.set(remnants.predecessor.name, remnants.cut)
    // An empty last segment holds no record, but its name says LSNs below it were taken.
    this.lastLsn = Math.max(plan.keptLsn, last && plan.segment === last && plan.validEnd === SEGMENT_HEADER_SIZE ? last.firstLsn - 1 : 0)
    this.checkpointLsn = plan.checkpointLsn
    this.segments = segments.filter((s) => !this.gone.has(s.name))
    const durable = readDurable(dir, backend)
    this.published = durable !== undefined
    this.durableLsn = durable ?? this.lastLsn
  }

  /** Takes a fresh look: the durable LSN always, the directory listing when `listing`. */
  refresh(listing: boolean): void {
    if (listing) {
      try {
        this.segments = listSegments(this.dir).filter((s) => !this.gone.has(s.name))
      } catch {
        // The directory is unreadable now: keep the last listing; reading reports the error.
      }
    }
    const durable = readDurable(this.dir, this.backend)
    if (durable !== undefined) {
      this.published = true
      this.durableLsn = durable
      if (durable > this.lastLsn) this.lastLsn = durable
    }
  }

  /** A follower saw an LSN: the log holds at least that much. */
  observed(lsn: number): void {
    if (lsn > this.lastLsn) this.lastLsn = lsn
  }

  /** Bytes of `name` to read, or -1 for the whole file. */
  limitFor(name: string): number {
    return this.limits.get(name) ?? -1
  }
}
