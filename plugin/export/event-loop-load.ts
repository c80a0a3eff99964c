import { performance } from 'node:perf_hooks'

const SAMPLE_MS = 250
/** Busy from this share of the last sample's time on; idle again below the lower one (hysteresis). */
const BUSY_FROM = 0.5
const IDLE_BELOW = 0.3

/** Whether this thread's event loop was busy of late, sampled at most every SAMPLE_MS. */
export class EventLoopLoad {
  private busy = false
  private since = performance.eventLoopUtilization()
  private sampledAt = performance.now()

  isBusy (): boolean {
    const now = performance.now()
    if (now - this.sampledAt >= SAMPLE_MS) {
      const current = performance.eventLoopUtilization()
      const { utilization } = performance.eventLoopUtilization(current, this.since)
      this.busy = utilization >= (this.busy ? IDLE_BELOW : BUSY_FROM)
      this.since = current
      this.sampledAt = now
    }
    return this.busy
  }
}
