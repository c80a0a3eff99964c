/**
 * How many exports may be in flight: grows while the destination keeps up, backs off when its
 * latency grows or it answers 429 / 5xx (AIMD, as TCP does). Latency is judged against the
 * lowest latency seen lately, with slack for event-loop noise, and the limit never goes below a
 * floor: a destination that is merely as slow as usual must not shrink it (an earlier design fell
 * to 3 in flight, about 7 traces/s, in replay after an outage).
 */
export class AdaptiveConcurrency {
  limit: number
  /** The lowest latency seen, drifting slowly up so that a destination that became slower for good is the new normal. */
  private baseline = Infinity
  private lastDecrease = 0

  constructor (private readonly floor: number, private readonly max: number) {
    this.limit = floor
  }

  /**
   * An export finished in `ms`. `saturated`: traces were waiting for a slot, so the limit, not
   * the load, decided how many were in flight; only then does latency say anything about it.
   */
  succeeded (ms: number, saturated: boolean): void {
    if (ms < this.baseline) this.baseline = ms
    else this.baseline += (ms - this.baseline) / 1024
    if (!saturated) return
    if (ms > this.baseline * LATENCY_TOLERANCE + LATENCY_SLACK_MS) this.decrease(LATENCY_FACTOR)
    else if (this.limit < this.max) this.limit++ // one per success: doubles per round trip
  }

  /** 429 or 5xx: the destination says it is overloaded. */
  overloaded (): void {
    this.decrease(OVERLOAD_FACTOR)
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
