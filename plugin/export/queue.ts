import { setMaxListeners } from 'node:events'
import { FST_MLFLOW_INVALID_OPTION } from '../errors'
import { serializeTrace, type SerializedTrace } from '../trace/serialize'
import type { TraceRecord } from '../trace/trace-record'
import { AdaptiveConcurrency } from './adaptive-concurrency'
import { positiveInteger } from './config'
import { DestinationHealth, type DestinationState } from './destination-health'
import { MlflowHttpError } from './http'
import { ThrottledWarnings, type Logger } from './logger'
import type { OverflowReason, TraceOverflow } from './overflow'

/** Where a serialized trace finally goes: the MLflow server, a local file, memory. */
export interface TraceSink {
  /** Throws MlflowHttpError (retryable or not) or any error (not retried). */
  export: (trace: SerializedTrace, signal: AbortSignal) => Promise<void>
  /**
   * Asks whether the destination answers, without sending a trace; while it is down the queue
   * calls this, one at a time, instead of spending traces' attempts. Without it, the queue waits
   * a backoff and tries traces again.
   */
  probe?: (signal: AbortSignal) => Promise<void>
  close?: () => Promise<void>
}

export interface QueueOptions {
  /** Traces waiting at most; past it the oldest waiting trace is dropped (or spooled). Default 10 000. */
  maxTraces?: number
  /** Bytes of waiting traces at most (as estimated when each ended); past it the oldest waiting traces are dropped (or spooled). Default 32 MiB. */
  maxBytes?: number
  /**
   * Exports in flight at most. The limit adapts below it: it grows while the destination keeps
   * up and backs off on latency growth, 429 and 5xx, never below 8. Default 512.
   */
  concurrency?: number
  /** Tries per trace, the first included, counted only while the destination answers others. Default 5. */
  maxAttempts?: number
  /** First wait between probes of a destination that is down; doubles each probe, drawn at random from its upper half. Default 500 ms. */
  initialBackoffMs?: number
  /** Longest wait between probes, Retry-After included (at most 5 s). Default 30 s. */
  maxBackoffMs?: number
}

export type DropReason = 'queue_full' | 'too_large' | 'rejected' | 'retries_exhausted' | 'failed' | 'shutdown' | 'serialization_error'

export interface ExportStats {
  /** Traces in memory waiting for an export slot (retries and traces taken back from the overflow included). */
  queued: number
  queuedBytes: number
  inFlight: number
  exported: number
  retried: number
  dropped: Record<DropReason, number>
  /** Traces handed to the overflow (the spool) instead of being kept in memory or dropped. */
  overflowed: Record<OverflowReason, number>
  /** Exports allowed in flight now (adaptive). */
  concurrency: number
  /** The destination as the queue knows it, and since when (ISO time). */
  destination: { state: DestinationState, since: string }
}

/** Checks the `queue` option at registration: each bound a positive integer where it is set. */
export function checkQueueOptions (options: unknown): void {
  if (options === undefined) return
  if (typeof options !== 'object' || options === null) {
    throw new FST_MLFLOW_INVALID_OPTION('queue', `expected an object, got ${JSON.stringify(options)}`)
  }
  for (const key of Object.keys(QUEUE_DEFAULTS) as Array<keyof QueueOptions>) {
    const value = (options as QueueOptions)[key]
    if (value !== undefined) positiveInteger(value, `queue.${key}`)
  }
}

/** Exported for the bench, which reports the bound it ran against. */
export const QUEUE_DEFAULTS = { maxTraces: 10_000, maxBytes: 32 * 1024 * 1024, concurrency: 512, maxAttempts: 5, initialBackoffMs: 500, maxBackoffMs: 30_000 }
/** The adaptive limit's floor (the fixed concurrency measured best against a 2-worker MLflow). */
const MIN_CONCURRENCY = 8
/** How long shutdown() lets aborted in-flight exports settle (a sink may ignore the signal). */
const SHUTDOWN_SETTLE_MS = 1000
/** Free export slots that make it worth taking traces back from the overflow while exports are in flight. */
const REFILL_BATCH = 32
/** After the overflow gave nothing back, how long before asking it again (another process may hold its traces). */
const DRY_OVERFLOW_MS = 1000

interface Retry { trace: SerializedTrace, attempt: number }

/**
 * Exports finished traces in the background. The request path only pushes; a full queue hands the
 * OLDEST waiting trace to the overflow, or drops it (the newest traces are the ones being
 * debugged), and every loss is counted by reason. A trace is serialized when an export takes it,
 * so one dropped while waiting costs no serialization.
 *
 * While the destination is down nothing is taken off the queue: traces that were in flight wait
 * for the probe's answer, new ones go to the overflow (so that a crash loses little). Once it
 * answers, retries go first, then what waits in memory, then what the overflow gives back.
 */
export class ExportQueue {
  private readonly opts: Required<QueueOptions>
  private readonly waiting: TraceRecord[] = []
  private head = 0
  private bytes = 0
  private active = 0
  private closed = false
  private readonly retrying: Retry[] = []
  /** Since an export last worked: the first trace that failed transiently, and whether others did too. */
  private failing: SerializedTrace | undefined
  private othersFailing = false
  /** Taken back from the overflow, not yet sent. */
  private readonly replay: TraceRecord[] = []
  /** Records the overflow gave us: settled there once done with, left there at shutdown. */
  private readonly fromOverflow = new WeakSet<TraceRecord>()
  private taking = false
  private dryUntil = 0
  private readonly abort = new AbortController()
  private idleWaiters: Array<() => void> = []
  private readonly loggedRejections = new Set<string>()
  private readonly warnings: ThrottledWarnings
  private readonly health: DestinationHealth
  private readonly concurrency: AdaptiveConcurrency
  readonly counts = zeroCounts()

  constructor (private readonly sink: TraceSink, private readonly logger: Logger, options: QueueOptions = {}, private readonly overflow?: TraceOverflow) {
    this.opts = { ...QUEUE_DEFAULTS, ...options }
    // Every export in flight listens to this one signal.
    setMaxListeners(0, this.abort.signal)
    this.warnings = new ThrottledWarnings(logger)
    this.concurrency = new AdaptiveConcurrency(startingConcurrency(this.opts.concurrency), this.opts.concurrency)
    this.health = new DestinationHealth(sink.probe?.bind(sink), this.opts, {
      up: () => {
        this.dryUntil = 0
        this.pump()
      },
      stillDown: () => this.spill()
    }, logger)
  }

  push (trace: TraceRecord): void {
    if (this.closed) return this.drop('shutdown', trace)
    if (trace.bytes > this.opts.maxBytes) return this.drop('too_large', trace)
    if (!this.health.up && this.handOver(trace, 'destination_down')) return
    this.waiting.push(trace)
    this.concurrency.arrived()
    this.bytes += trace.bytes
    while (this.size > this.opts.maxTraces || this.bytes > this.opts.maxBytes) this.evict(this.takeOldest(), 'queue_full')
    this.pump()
  }

  /** Looks at the overflow now: at start-up it may hold traces an earlier process left, and no push may come. */
  wake (): void {
    this.pump()
  }

  stats (): ExportStats {
    return {
      queued: this.size + this.retrying.length + this.replay.length,
      queuedBytes: this.bytes,
      inFlight: this.active,
      exported: this.counts.exported,
      retried: this.counts.retried,
      dropped: { ...this.counts.dropped },
      overflowed: { ...this.counts.overflowed },
      concurrency: this.concurrency.limit,
      destination: { state: this.health.state, since: new Date(this.health.since).toISOString() }
    }
  }

  /** Resolves true once everything pushed so far is exported, dropped or spooled, false at the deadline. */
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

  /**
   * Stops taking traces and exports until the deadline; what is left goes to the overflow, or is
   * dropped (counted as shutdown). Traces taken from the overflow and not exported stay there.
   */
  async shutdown (timeoutMs: number): Promise<boolean> {
    this.closed = true
    // Nothing will be exported before the destination answers: spool now rather than at the deadline.
    if (!this.health.up) this.spill()
    const flushed = await this.flush(timeoutMs)
    this.abort.abort()
    this.health.stop()
    while (this.size > 0) this.evict(this.takeOldest(), 'shutdown')
    for (const { trace } of this.retrying.splice(0)) this.abandon(trace.record)
    this.replay.length = 0
    // In-flight exports see the abort and count themselves; let them settle first.
    await this.flush(SHUTDOWN_SETTLE_MS)
    await this.overflow?.close()
    await this.sink.close?.()
    return flushed
  }

  private get size (): number {
    return this.waiting.length - this.head
  }

  private get backlog (): number {
    return this.size + this.retrying.length + this.replay.length
  }

  private get idle (): boolean {
    return this.backlog === 0 && this.active === 0 && !this.taking && !this.overflowDrainable
  }

  /** The overflow has traces this process could export now. */
  private get overflowDrainable (): boolean {
    return this.overflow !== undefined && !this.closed && this.health.up && Date.now() >= this.dryUntil && this.overflow.pending() > 0
  }

  private takeOldest (): TraceRecord {
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
    // Once shutdown aborts, what still waits is spooled or dropped, not started.
    if (!this.health.up || this.abort.signal.aborted) return
    while (this.active < this.concurrency.limit) {
      const retry = this.retrying.pop()
      if (retry !== undefined) {
        this.send(retry.trace, retry.attempt)
        continue
      }
      const record = this.replay.pop() ?? (this.size > 0 ? this.takeOldest() : undefined)
      if (record === undefined) break
      let trace: SerializedTrace
      try {
        // Serialized once: retries send the same text.
        trace = serializeTrace(record)
      } catch (err) {
        this.drop('serialization_error', record, errorText(err))
        continue
      }
      this.send(trace, 1)
    }
    this.refill()
  }

  /** With memory empty and slots free, takes traces back from the overflow. */
  private refill (): void {
    const overflow = this.overflow
    if (overflow === undefined || this.taking || this.backlog > 0 || !this.overflowDrainable) return
    const room = this.concurrency.limit - this.active
    // Replayed traces share OTLP requests only when taken together: wait for a batch's worth of room.
    if (room <= 0 || (this.active > 0 && room < Math.min(REFILL_BATCH, this.concurrency.limit))) return
    this.taking = true
    overflow.take(room).then(records => {
      this.taking = false
      // Held by another process for now: ask again later, even if nothing else happens here.
      if (records.length === 0) this.dryFor(DRY_OVERFLOW_MS)
      for (const record of records) this.fromOverflow.add(record)
      this.replay.push(...records)
      this.pump()
      this.wakeIfIdle()
    }, (err: unknown) => {
      this.taking = false
      this.dryFor(DRY_OVERFLOW_MS)
      this.warnings.warn('overflow_take', () => ({ err: errorText(err) }), 'MLflow tracing: could not read traces back from the spool')
      this.wakeIfIdle()
    })
  }

  private dryFor (ms: number): void {
    this.dryUntil = Date.now() + ms
    setTimeout(() => this.pump(), ms).unref()
  }

  /**
   * One try. The sink's promise is chained directly, without an async wrapper or finally(): each
   * promise costs a round of AsyncLocalStorage hooks, and this runs for every trace.
   */
  private send (trace: SerializedTrace, attempt: number): void {
    this.active++
    const began = performance.now()
    let exported: Promise<void>
    try {
      // Promise.resolve() returns a native promise as it is; it only wraps a sink that returns a non-promise.
      exported = Promise.resolve(this.sink.export(trace, this.abort.signal))
    } catch (err) {
      exported = Promise.reject(err)
    }
    exported.then(() => {
      this.failing = undefined
      this.othersFailing = false
      this.counts.exported++
      this.concurrency.succeeded(performance.now() - began, this.backlog)
      this.settle(trace.record)
      this.done()
    }, (err: unknown) => { this.failed(trace, attempt, err) })
  }

  private failed (trace: SerializedTrace, attempt: number, err: unknown): void {
    if (this.abort.signal.aborted) this.abandon(trace.record)
    else if (!(err instanceof MlflowHttpError)) this.drop('failed', trace.record, errorText(err))
    else if (!err.retryable) this.reject(trace, err)
    else this.retry(trace, attempt, err)
    this.done()
  }

  /** A transient failure: the trace waits for the probe, and drops only once its own attempts are spent. */
  private retry (trace: SerializedTrace, attempt: number, err: MlflowHttpError): void {
    const charged = this.chargeable(trace)
    if (charged && attempt >= this.opts.maxAttempts) return this.drop('retries_exhausted', trace.record, err.message)
    this.counts.retried++
    this.retrying.push({ trace, attempt: charged ? attempt + 1 : attempt })
    if (err.status === 429 || err.status >= 500 || err.errorCode === 'TIMEOUT') this.concurrency.overloaded()
    this.health.failed(err)
  }

  /**
   * Whether a transient failure is the trace's own: the first since an export last worked, or one
   * more of a trace that has been failing alone. Traces that fail alongside others, with no export
   * working in between, fail for the destination's reason (one OTLP request of many traces, the
   * calls in flight when a server went away, a restarted server that answers probes before it can
   * store traces), and are not charged an attempt for it.
   */
  private chargeable (trace: SerializedTrace): boolean {
    this.failing ??= trace
    if (this.failing !== trace) this.othersFailing = true
    return this.failing === trace && !this.othersFailing
  }

  /** An export is over: its slot goes to the next trace. */
  private done (): void {
    this.active--
    this.pump()
    this.wakeIfIdle()
  }

  private wakeIfIdle (): void {
    if (this.idle) for (const wake of this.idleWaiters.splice(0)) wake()
  }

  /** The destination stays down: what waits in memory goes to the overflow, as long as it takes it. */
  private spill (): void {
    if (this.overflow === undefined) return
    while (this.size > 0) {
      const oldest = this.waiting[this.head]
      if (!this.handOver(oldest, 'destination_down')) return
      this.takeOldest()
    }
    for (let i = this.retrying.length - 1; i >= 0; i--) {
      const { record } = this.retrying[i].trace
      // One taken from the overflow is still there; another copy would be sent twice.
      if (this.fromOverflow.has(record)) continue
      if (!this.handOver(record, 'destination_down')) return
      this.retrying.splice(i, 1)
    }
    this.wakeIfIdle()
  }

  /** True when the overflow kept the trace. */
  private handOver (trace: TraceRecord, reason: OverflowReason): boolean {
    if (this.overflow?.put(trace, reason) !== true) return false
    this.counts.overflowed[reason]++
    this.dryUntil = 0
    return true
  }

  /** Past the bounds or the deadline: to the overflow, or dropped for that reason. */
  private evict (trace: TraceRecord, reason: 'queue_full' | 'shutdown'): void {
    if (!this.handOver(trace, reason)) this.drop(reason, trace)
  }

  /** Shutdown cut the trace's export short; one from the overflow stays there for the next process. */
  private abandon (trace: TraceRecord): void {
    if (!this.fromOverflow.has(trace)) this.evict(trace, 'shutdown')
  }

  /** A taken-back trace is done with, exported or dropped for its own reason. */
  private settle (trace: TraceRecord): void {
    if (this.fromOverflow.delete(trace)) this.overflow?.settled(trace)
  }

  private drop (reason: DropReason, trace: TraceRecord, detail?: string): void {
    this.counts.dropped[reason]++
    this.settle(trace)
    this.warnings.warn(reason, () => ({ reason, traceId: trace.id, detail, stats: this.stats() }), `MLflow trace dropped: ${reason}`)
  }

  /** A 4xx will fail again: counted, and logged once per kind with the server's own words. */
  private reject (trace: SerializedTrace, err: MlflowHttpError): void {
    this.counts.dropped.rejected++
    this.settle(trace.record)
    const kind = `${err.status}:${err.errorCode}`
    if (this.loggedRejections.has(kind)) return
    this.loggedRejections.add(kind)
    this.logger.error({ traceId: trace.traceId, status: err.status, errorCode: err.errorCode, err: err.message },
      'MLflow server rejected a trace; further rejections of this kind are counted, not logged')
  }
}

export type ExportCounts = Pick<ExportStats, 'exported' | 'retried' | 'dropped' | 'overflowed'>

export function zeroCounts (): ExportCounts {
  return {
    exported: 0,
    retried: 0,
    dropped: { queue_full: 0, too_large: 0, rejected: 0, retries_exhausted: 0, failed: 0, shutdown: 0, serialization_error: 0 },
    overflowed: { destination_down: 0, queue_full: 0, shutdown: 0 }
  }
}

function startingConcurrency (max: number): number {
  return Math.min(MIN_CONCURRENCY, max)
}

/** A queue's stats before its first trace: what a queue elsewhere (a worker's) says until it reports. */
export function emptyStats (options: QueueOptions = {}, since = Date.now()): ExportStats {
  return {
    queued: 0,
    queuedBytes: 0,
    inFlight: 0,
    ...zeroCounts(),
    concurrency: startingConcurrency(options.concurrency ?? QUEUE_DEFAULTS.concurrency),
    destination: { state: 'up', since: new Date(since).toISOString() }
  }
}

/** A sink may throw anything, undefined included: reading `.message` must not throw in turn. */
function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
