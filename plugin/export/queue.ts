import { serializeTrace, type SerializedTrace } from '../trace/serialize'
import type { TraceRecord } from '../trace/trace-record'
import { backoffDelay } from './backoff'
import { MlflowHttpError } from './http'
import { ThrottledWarnings, type Logger } from './logger'

/** Where a serialized trace finally goes: the MLflow server, a local file, memory. */
export interface TraceSink {
  /** Throws MlflowHttpError (retryable or not) or any error (not retried). */
  export: (trace: SerializedTrace, signal: AbortSignal) => Promise<void>
  close?: () => Promise<void>
}

export interface QueueOptions {
  /** Traces waiting at most; past it the oldest waiting trace is dropped. Default 1000. */
  maxTraces?: number
  /** Bytes of waiting traces at most (as estimated when each ended); past it the oldest waiting traces are dropped. Default 32 MiB. */
  maxBytes?: number
  /** Exports in flight at once. Default 8 (measured: 4.2× one-at-a-time against a 2-worker MLflow; 16 adds nothing). */
  concurrency?: number
  /** Tries per trace, the first included. Default 5. */
  maxAttempts?: number
  /** First retry delay; doubles each try, drawn at random from its upper half. Default 500 ms. */
  initialBackoffMs?: number
  /** Longest retry delay, Retry-After included. Default 30 s. */
  maxBackoffMs?: number
}

export type DropReason = 'queue_full' | 'too_large' | 'rejected' | 'retries_exhausted' | 'failed' | 'shutdown' | 'serialization_error'

export interface ExportStats {
  queued: number
  queuedBytes: number
  inFlight: number
  exported: number
  retried: number
  dropped: Record<DropReason, number>
}

const DEFAULTS = { maxTraces: 1000, maxBytes: 32 * 1024 * 1024, concurrency: 8, maxAttempts: 5, initialBackoffMs: 500, maxBackoffMs: 30_000 }
/** How long shutdown() lets aborted in-flight exports settle (a sink may ignore the signal). */
const SHUTDOWN_SETTLE_MS = 1000

/**
 * Exports finished traces in the background. The request path only pushes; a full queue drops the
 * OLDEST waiting trace (the newest traces are the ones being debugged), and every loss is counted
 * by reason. A trace is serialized when an export takes it, so one dropped while waiting, as most
 * are when traces come faster than the destination takes them, costs no serialization.
 */
export class ExportQueue {
  private readonly opts: Required<QueueOptions>
  private readonly waiting: TraceRecord[] = []
  private head = 0
  private bytes = 0
  private active = 0
  private closed = false
  private readonly abort = new AbortController()
  private idleWaiters: Array<() => void> = []
  private readonly loggedRejections = new Set<string>()
  private readonly warnings: ThrottledWarnings
  readonly counts = {
    exported: 0,
    retried: 0,
    dropped: { queue_full: 0, too_large: 0, rejected: 0, retries_exhausted: 0, failed: 0, shutdown: 0, serialization_error: 0 }
  }

  constructor (private readonly sink: TraceSink, private readonly logger: Logger, options: QueueOptions = {}) {
    this.opts = { ...DEFAULTS, ...options }
    this.warnings = new ThrottledWarnings(logger)
  }

  push (trace: TraceRecord): void {
    if (this.closed) return this.drop('shutdown', trace.id)
    if (trace.bytes > this.opts.maxBytes) return this.drop('too_large', trace.id)
    this.waiting.push(trace)
    this.bytes += trace.bytes
    while (this.size > this.opts.maxTraces || this.bytes > this.opts.maxBytes) this.drop('queue_full', this.take().id)
    this.pump()
  }

  stats (): ExportStats {
    return { queued: this.size, queuedBytes: this.bytes, inFlight: this.active, exported: this.counts.exported, retried: this.counts.retried, dropped: { ...this.counts.dropped } }
  }

  /** Resolves true once everything pushed so far is exported or dropped, false at the deadline. */
  async flush (timeoutMs: number): Promise<boolean> {
    if (this.idle) return true
    let timer: NodeJS.Timeout | undefined
    const done = await Promise.race([
      new Promise<boolean>(resolve => this.idleWaiters.push(() => resolve(true))),
      new Promise<boolean>(resolve => { timer = setTimeout(resolve, timeoutMs, false) })
    ])
    clearTimeout(timer)
    return done
  }

  /** Stops taking traces, flushes until the deadline, then abandons what is left (counted as shutdown). */
  async shutdown (timeoutMs: number): Promise<boolean> {
    this.closed = true
    const flushed = await this.flush(timeoutMs)
    this.abort.abort()
    while (this.size > 0) this.drop('shutdown', this.take().id)
    // In-flight exports see the abort and count themselves as dropped; let them settle first.
    await this.flush(SHUTDOWN_SETTLE_MS)
    await this.sink.close?.()
    return flushed
  }

  private get size (): number {
    return this.waiting.length - this.head
  }

  private get idle (): boolean {
    return this.size === 0 && this.active === 0
  }

  private take (): TraceRecord {
    const trace = this.waiting[this.head]
    this.waiting[this.head++] = undefined as unknown as TraceRecord
    // Compact now and then instead of shift()ing on every take.
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head)
      this.head = 0
    }
    this.bytes -= trace.bytes
    return trace
  }

  private pump (): void {
    // Once shutdown aborts, what still waits is dropped, not started.
    while (this.active < this.opts.concurrency && this.size > 0 && !this.abort.signal.aborted) {
      const record = this.take()
      let trace: SerializedTrace
      try {
        // Serialized once: retries send the same text.
        trace = serializeTrace(record)
      } catch (err) {
        this.drop('serialization_error', record.id, errorText(err))
        continue
      }
      this.active++
      this.send(trace, 1)
    }
  }

  /**
   * One try. The sink's promise is chained directly, without an async wrapper or finally(): each
   * promise costs a round of AsyncLocalStorage hooks, and this runs for every trace.
   */
  private send (trace: SerializedTrace, attempt: number): void {
    let exported: Promise<void>
    try {
      // Promise.resolve() returns a native promise as it is; it only wraps a sink that returns a non-promise.
      exported = Promise.resolve(this.sink.export(trace, this.abort.signal))
    } catch (err) {
      exported = Promise.reject(err)
    }
    exported.then(() => {
      this.counts.exported++
      this.settled()
    }, (err: unknown) => { this.failed(trace, attempt, err) })
  }

  private failed (trace: SerializedTrace, attempt: number, err: unknown): void {
    if (this.abort.signal.aborted) this.drop('shutdown', trace.traceId)
    else if (!(err instanceof MlflowHttpError)) this.drop('failed', trace.traceId, errorText(err))
    else if (!err.retryable) this.reject(trace, err)
    else if (attempt >= this.opts.maxAttempts) this.drop('retries_exhausted', trace.traceId, err.message)
    else {
      this.counts.retried++
      return this.retryLater(trace, attempt, backoffDelay(this.opts, attempt, err.retryAfterMs))
    }
    this.settled()
  }

  /** Tries again after `ms`, keeping the trace's slot; shutdown cuts the wait short and drops the trace. */
  private retryLater (trace: SerializedTrace, attempt: number, ms: number): void {
    const signal = this.abort.signal
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      this.send(trace, attempt + 1)
    }, ms)
    const onAbort = (): void => {
      clearTimeout(timer)
      this.drop('shutdown', trace.traceId)
      this.settled()
    }
    signal.addEventListener('abort', onAbort, { once: true })
  }

  /** An export is over, exported or dropped: its slot goes to the next trace. */
  private settled (): void {
    this.active--
    this.pump()
    if (this.idle) for (const wake of this.idleWaiters.splice(0)) wake()
  }

  private drop (reason: DropReason, traceId: string, detail?: string): void {
    this.counts.dropped[reason]++
    this.warnings.warn(reason, () => ({ reason, traceId, detail, stats: this.stats() }), `MLflow trace dropped: ${reason}`)
  }

  /** A 4xx will fail again: counted, and logged once per kind with the server's own words. */
  private reject (trace: SerializedTrace, err: MlflowHttpError): void {
    this.counts.dropped.rejected++
    const kind = `${err.status}:${err.errorCode}`
    if (this.loggedRejections.has(kind)) return
    this.loggedRejections.add(kind)
    this.logger.error({ traceId: trace.traceId, status: err.status, errorCode: err.errorCode, err: err.message },
      'MLflow server rejected a trace; further rejections of this kind are counted, not logged')
  }
}

/** A sink may throw anything, undefined included: reading `.message` must not throw in turn. */
function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
