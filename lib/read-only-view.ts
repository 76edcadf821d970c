// What a readOnly handle reads: the segments and bytes recovery judged whole, fixed at
// open. Nothing is repaired: damage recovery would cut is left out of view instead.
import { SEGMENT_HEADER_SIZE } from './format.js'
import type { TailPlan } from './recovery.js'
import type { Remnants } from './repair.js'
import type { SegmentRef } from './segments.js'

export class ReadOnlyView {
  readonly lastLsn: number
  readonly checkpointLsn: number
  /** Segments in view, oldest first. */
  readonly segments: SegmentRef[]
  /** Bytes known to hold whole records, for segments read only up to a point. */
  private readonly limits = new Map<string, number>()

  constructor(segments: SegmentRef[], plan: TailPlan, remnants: Remnants | undefined) {
    const gone = new Set([...(plan.dropSegments ?? []), ...(plan.deleteSegment ? [plan.deleteSegment] : []), ...(remnants?.orphans ?? [])])
    if (plan.segment) this.limits.set(plan.segment.name, plan.validEnd)
    if (remnants?.predecessor) this.limits.set(remnants.predecessor.name, remnants.cut)
    const last = segments[segments.length - 1]
    // An empty last segment holds no record, but its name says LSNs below it were taken.
    this.lastLsn = Math.max(plan.keptLsn, last && plan.segment === last && plan.validEnd === SEGMENT_HEADER_SIZE ? last.firstLsn - 1 : 0)
    this.checkpointLsn = plan.checkpointLsn
    this.segments = segments.filter((s) => !gone.has(s))
  }

  /** Bytes of `name` to read, or -1 for the whole file. */
  limitFor(name: string): number {
    return this.limits.get(name) ?? -1
  }
}
