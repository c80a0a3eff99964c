import { backoffDelay, type BackoffOptions } from './backoff'
import { MlflowHttpError } from './http'
import type { Logger } from './logger'

export type DestinationState = 'up' | 'down'

/** Asks the destination whether it answers; a transient MlflowHttpError means it does not. */
export type Probe = (signal: AbortSignal) => Promise<void>

export interface HealthEvents {
  /** The destination answered a probe: exports resume at full speed. */
  up: () => void
  /** A probe failed: the destination is down for longer than one blip. */
  stillDown: () => void
}

/** Longest wait between two probes: a restarted server is noticed within this. */
const MAX_PROBE_INTERVAL_MS = 5000

/**
 * The destination as a whole, rather than each trace's luck. The first transient failure (refused,
 * timed out, 429, 5xx) marks it down; from then on one probe at a time, with backoff (and the
 * server's Retry-After), asks whether it answers again. While it is down no trace is taken off
 * the queue, so none is charged attempts for an outage it only waited through.
 */
export class DestinationHealth {
  state: DestinationState = 'up'
  /** Date.now() of the last change of state. */
  since = Date.now()
  private probes = 0
  /** Date.now() when a probe last found it answering. */
  private cameBack: number | undefined
  /** Times in a row it went down again soon after it came back. */
  private relapses = 0
  private timer: NodeJS.Timeout | undefined
  private readonly abort = new AbortController()
  private readonly backoff: BackoffOptions

  constructor (
    private readonly probe: Probe | undefined,
    backoff: BackoffOptions,
    private readonly events: HealthEvents,
    private readonly logger: Logger
  ) {
    this.backoff = { ...backoff, maxBackoffMs: Math.min(backoff.maxBackoffMs, MAX_PROBE_INTERVAL_MS) }
  }

  get up (): boolean {
    return this.state === 'up'
  }

  /** A call failed transiently. The first probe goes at once (or after Retry-After): a blip costs one round trip. */
  failed (err: MlflowHttpError): void {
    if (this.state === 'down' || this.abort.signal.aborted) return
    const now = Date.now()
    // Down again soon after a probe found it answering (it answers probes, not exports): back off
    // further each time rather than probing at once and sending the queue into it again.
    this.relapses = this.cameBack !== undefined && now - this.cameBack < MAX_PROBE_INTERVAL_MS ? this.relapses + 1 : 0
    this.state = 'down'
    this.since = now
    this.probes = 0
    // A sink without a probe can only be tried again by sending traces: wait first.
    const wait = this.probe === undefined || this.relapses > 0 ? backoffDelay(this.backoff, this.relapses + 1) : 0
    this.schedule(err.retryAfterMs ?? wait)
  }

  stop (): void {
    clearTimeout(this.timer)
    this.abort.abort()
  }

  private schedule (ms: number): void {
    // Probing alone does not keep a process alive that has nothing else to do (shutdown() spools or counts what waits).
    this.timer = setTimeout(this.check, Math.min(ms, this.backoff.maxBackoffMs)).unref()
  }

  private readonly check = (): void => {
    if (this.probe === undefined) return this.answered()
    this.probe(this.abort.signal).then(this.answered, (err: unknown) => {
      if (this.abort.signal.aborted) return
      // Any answer but a transient failure (a 4xx included) means the server is there.
      if (!(err instanceof MlflowHttpError) || !err.retryable) return this.answered()
      if (++this.probes === 1) {
        this.logger.warn({ err: err.message, since: new Date(this.since).toISOString() },
          'MLflow destination is down: traces wait (or spool) and are not charged attempts; probing with backoff')
      }
      this.events.stillDown()
      this.schedule(backoffDelay(this.backoff, this.probes, err.retryAfterMs))
    })
  }

  private readonly answered = (): void => {
    if (this.abort.signal.aborted) return
    if (this.probes > 0) {
      this.logger.info({ downMs: Date.now() - this.since, probes: this.probes }, 'MLflow destination answers again; exports resume')
    }
    this.state = 'up'
    this.since = this.cameBack = Date.now()
    this.events.up()
  }
}
