import { MlflowHttpError } from '../export/http'
import type { TraceSink } from '../export/queue'

/** How many unexported trace ids are remembered; past it the oldest (dropped ones, mostly) are forgotten. */
const CAPACITY = 10_000

/**
 * Ids of traces this process ended and has not exported yet. Feedback often comes right after its
 * request, before the trace is stored; and with OTLP export the server knows the trace from its
 * spans before its TraceInfo (and user) arrives. A pending id is waited for, not answered.
 */
export class PendingTraces {
  private readonly ids = new Set<string>()

  add (id: string): void {
    this.ids.add(id)
    // A Set iterates in insertion order: the first is the oldest.
    if (this.ids.size > CAPACITY) this.ids.delete(this.ids.values().next().value as string)
  }

  has (id: string): boolean {
    return this.ids.has(id)
  }

  /** The trace is exported, or refused for good: feedback on it need not wait any longer. */
  settle (id: string): void {
    this.ids.delete(id)
  }
}

/**
 * `sink`, calling `settle` with a trace's id once it is exported or refused for good (an error the
 * export queue does not retry). One `then` per export, no async wrapper: this runs for every trace.
 */
export function settling (sink: TraceSink, settle: (id: string) => void): TraceSink {
  return {
    export: (trace, signal) => Promise.resolve(sink.export(trace, signal)).then(() => {
      settle(trace.traceId)
    }, (err: unknown) => {
      if (!(err instanceof MlflowHttpError && err.retryable)) settle(trace.traceId)
      throw err
    }),
    // The queue probes a destination that is down with it instead of spending traces' attempts.
    probe: sink.probe?.bind(sink),
    close: sink.close === undefined ? undefined : async () => { await sink.close?.() }
  }
}
