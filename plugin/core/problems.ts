import { ThrottledWarnings, type Logger } from '../export/logger'

/** Counted request-time problems: tracing swallows them rather than fail the request. */
export interface LifecycleCounters {
  invalidSessions: number
  hookErrors: number
}

/** Where request-time problems go: counted, and logged at most once a minute per kind. */
export class Problems {
  readonly counters: LifecycleCounters = { invalidSessions: 0, hookErrors: 0 }
  private readonly warnings: ThrottledWarnings

  constructor (logger: Logger) {
    this.warnings = new ThrottledWarnings(logger)
  }

  /** Runs one step alone: a throwing user callback costs its own data, not the rest of the trace. */
  guard (fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.failed(err)
    }
  }

  failed (err: unknown): void {
    const counters = this.counters
    counters.hookErrors++
    this.warnings.warn('hook', () => ({ err: (err as Error).message, hookErrors: counters.hookErrors }), 'MLflow tracing: a request hook failed; the request went on')
  }

  invalidSession (header: string): void {
    const counters = this.counters
    counters.invalidSessions++
    this.warnings.warn('session', () => ({ header, invalidSessions: counters.invalidSessions }),
      `ignored an invalid ${header} header (want 1-128 of [A-Za-z0-9_.:@+=/-])`)
  }
}
