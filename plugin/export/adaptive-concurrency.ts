/**
 * How many exports may be in flight: grows while the destination keeps up, backs off when its
 * latency grows or it answers 429 / 5xx (AIMD, as TCP does). Latency is judged against the
 * lowest latency seen lately, with slack for event-loop noise, and the limit never goes below a
 * floor: a destination that is merely as slow as usual must not shrink it (an earlier design fell
 * to 3 in flight, about 7 traces/s, in replay after an outage).
 *
 * Nor does it grow past twice what the demand needs (Little's law: traces arriving or waiting per
 * second × the usual latency). Against a fast destination the limit otherwise climbs to its
 * maximum on bursts alone: 500 connections where 20 carry the load, each call then dearer in CPU.
 */
export class AdaptiveConcurrency {
  limit: number
  /** The lowest latency seen, drifting slowly up so that a destination that became slower for good is the new normal. */
  private baseline = Infinity
  private lastDecrease = 0
  /** The mean latency lately, and arrivals in the current window. */
  private meanMs = 0
  private arrivals = 0
  private windowStart = performance.now()
  private needed = Infinity

  constructor (private readonly floor: number, private readonly max: number) {
    this.limit = floor
  }

  /** A trace was queued. */
  arrived (): void {
    this.arrivals++
  }

  /**
   * An export finished in `ms`, with `backlog` traces waiting for a slot: only then did the limit,
   * not the load, decide how many were in flight, and only then does latency say anything about it.
   */
  succeeded (ms: number, backlog: number): void {
    if (ms < this.baseline) this.baseline = ms
    else this.baseline += (ms - this.baseline) / 1024
    this.meanMs = this.meanMs === 0 ? ms : this.meanMs + (ms - this.meanMs) / 64
    this.estimateNeed(backlog)
    if (backlog === 0) return
    if (ms > this.baseline * LATENCY_TOLERANCE + LATENCY_SLACK_MS) this.decrease(LATENCY_FACTOR)
    else if (this.limit < this.max && this.limit < this.needed) this.limit++ // one per success: doubles per round trip
  }

  /** 429 or 5xx: the destination says it is overloaded. */
  overloaded (): void {
    this.decrease(OVERLOAD_FACTOR)
  }

  /** Once a window: in flight on average = (arrivals + backlog to clear within a second) per ms × mean latency. */
  private estimateNeed (backlog: number): void {
    const now = performance.now()
    const elapsed = now - this.windowStart
    if (elapsed < NEED_WINDOW_MS) return
    const perMs = this.arrivals / elapsed + backlog / 1000
    this.needed = Math.ceil(NEED_HEADROOM * perMs * this.meanMs) + this.floor
    this.arrivals = 0
    this.windowStart = now
    if (this.limit > this.needed) this.limit = this.needed
  }

  private decrease (factor: number): void {
    // Exports in flight together fail together: one decrease per round trip, not one per export.
    const now = Date.now()
    const interval = Number.isFinite(this.baseline) ? Math.max(this.baseline * 2, MIN_DECREASE_INTERVAL_MS) : MIN_DECREASE_INTERVAL_MS
    if (now - this.lastDecrease < interval) return
    this.lastDecrease = now
    this.limit = Math.max(this.floor, Math.floor(this.limit * factor))
  }
}

const LATENCY_TOLERANCE = 2
const LATENCY_SLACK_MS = 20
const LATENCY_FACTOR = 0.9
const OVERLOAD_FACTOR = 0.5
const MIN_DECREASE_INTERVAL_MS = 100
const NEED_WINDOW_MS = 250
const NEED_HEADROOM = 2
