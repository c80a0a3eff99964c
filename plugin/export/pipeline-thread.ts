import { extname, join } from 'node:path'
import { Worker } from 'node:worker_threads'
import type { TraceRecord } from '../trace/trace-record'
import type { DestinationOptions } from './config'
import { ThrottledWarnings, type Logger } from './logger'
import type { PipelineStart, PipelineStats, TracePipeline } from './pipeline'
import { emptyStats, zeroCounts, type DropReason, type ExportCounts, type QueueOptions } from './queue'
import { encodeTrace } from './spool/codec'
import { errorFromShape, type ErrorShape } from './thread-error'

/** What the worker is built from: plain values only, since they are cloned into it. */
export interface PipelineWorkerData {
  options: DestinationOptions & { queue?: QueueOptions }
  env: Record<string, string | undefined>
}

type Op = 'start' | 'experimentId' | 'flush' | 'shutdown'
export interface PipelineCall { id: number, op: Op, timeoutMs: number }

/** To the worker, once per event-loop turn: the traces ended in it (spool lines joined by newlines), then calls. */
export interface ToPipeline { lines: string, calls: PipelineCall[] }

export type PipelineAnswer = { id: number, value: unknown, error?: undefined } | { id: number, error: ErrorShape }

/** From the worker: its logger's lines, and reports of its state. */
export type FromPipeline =
  | { log: 'info' | 'warn' | 'error', obj: object, msg?: string }
  | { log?: undefined, report: PipelineReport }

export interface PipelineReport {
  /** Trace lines taken so far: the rest are on their way. */
  received: number
  /** Ids exported or refused for good since the last report. */
  settled: string[]
  stats: PipelineStats
  canJoin: boolean
  answers: PipelineAnswer[]
}

interface Waiting {
  resolve: (value: unknown) => void
  reject: (err: Error) => void
}

/**
 * The export of a tracking server's traces, on a worker thread: queue, serialization, HTTP calls
 * and spool. A request thread that exports thousands of traces a second allocates for each one a
 * body, its calls' closures and buffers, and they live for a round trip to the server: long
 * enough to survive the young generation, so every few hundred milliseconds a scavenge copied
 * megabytes while requests waited (measured: 0.2-1.3 s of pauses in 15 s, and a p99 two to
 * seventeen times the untraced app's). Here a trace costs the request thread one line of text,
 * and the traces of one event-loop turn go in one message. The worker keeps the process alive
 * only while it has work in flight, as sockets would; one that dies loses what it held, counted
 * as failed, and the next trace starts another.
 */
export class PipelineThread implements TracePipeline {
  private worker: Worker | undefined
  private stopping = false
  private lines: string[] = []
  private calls: PipelineCall[] = []
  private scheduled = false
  private nextId = 1
  private readonly waiting = new Map<number, Waiting>()
  private posted = 0
  private received = 0
  private last: PipelineStats
  private joinable: boolean
  private closed = false
  private experiment: string | undefined
  /** Counted on this side: traces that never reached a worker, and what workers that died had counted. */
  private carried = zeroCounts()
  private readonly warnings: ThrottledWarnings

  constructor (
    private readonly data: PipelineWorkerData,
    canJoin: boolean,
    private readonly logger: Logger,
    private readonly settle: (id: string) => void
  ) {
    this.last = emptyStats(data.options.queue)
    this.joinable = canJoin
    this.warnings = new ThrottledWarnings(logger)
  }

  push (trace: TraceRecord): void {
    if (this.closed) return this.lose('shutdown', 1)
    let line: string
    try {
      line = encodeTrace(trace)
    } catch (err) {
      return this.lose('serialization_error', 1, err)
    }
    this.lines.push(line)
    this.posted++
    this.schedule()
  }

  async start (): Promise<PipelineStart> {
    const started = await this.call('start', 0) as PipelineStart
    this.experiment ??= started.experimentId
    return started
  }

  /** Asked of the worker once; known here after that, shut down or not. */
  async experimentId (): Promise<string | undefined> {
    if (this.experiment === undefined && !this.closed) this.experiment = await this.call('experimentId', 0) as string
    return this.experiment
  }

  get canJoin (): boolean {
    return this.joinable
  }

  stats (): PipelineStats {
    const { last } = this
    const stats: PipelineStats = { ...last, queued: last.queued + this.posted - this.received, ...addCounts(last, this.carried) }
    if (last.spool !== undefined) stats.spool = { ...last.spool }
    return stats
  }

  /** No worker, and no trace waiting to start one: there is nothing to flush. */
  private get unused (): boolean {
    return this.worker === undefined && this.lines.length === 0
  }

  async flush (timeoutMs: number): Promise<boolean> {
    if (this.unused) return true
    return await this.call('flush', timeoutMs).then(Boolean, () => false)
  }

  async shutdown (timeoutMs: number): Promise<boolean> {
    this.closed = true
    if (this.unused) return true
    const flushed = await this.call('shutdown', timeoutMs).then(Boolean, () => false)
    this.stopping = true
    await this.worker?.terminate()
    return flushed
  }

  private async call (op: Op, timeoutMs: number): Promise<unknown> {
    return await new Promise((resolve, reject) => {
      const id = this.nextId++
      this.waiting.set(id, { resolve, reject })
      this.calls.push({ id, op, timeoutMs })
      this.schedule()
    })
  }

  private schedule (): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(this.send)
  }

  private readonly send = (): void => {
    this.scheduled = false
    const message: ToPipeline = { lines: this.lines.join('\n'), calls: this.calls }
    const count = this.lines.length
    this.lines = []
    this.calls = []
    // Shut down: no new worker for a call that comes late (its traces were counted at push).
    if (this.stopping) {
      for (const { id } of message.calls) this.answered({ id, error: { message: 'MLflow tracing is shut down' } })
      return
    }
    try {
      (this.worker ?? this.startWorker()).postMessage(message)
    } catch (err) {
      this.posted -= count
      this.lose('failed', count, err)
      for (const { id } of message.calls) this.answered({ id, error: { message: `the export thread did not start: ${String(err)}` } })
      return
    }
    this.keepAlive()
  }

  private startWorker (): Worker {
    // Compiled, the worker is a .js file beside this one; under a TypeScript loader (the tests) a
    // .ts file that needs the loader's flags. An app's own preloads (an APM agent) stay out of it.
    const ext = extname(__filename)
    const worker = new Worker(join(__dirname, 'pipeline-worker' + ext), { workerData: this.data, execArgv: ext === '.ts' ? process.execArgv : [] })
    worker.on('message', (m: FromPipeline) => {
      if (m.log !== undefined) this.logger[m.log](m.obj, m.msg)
      else this.reported(m.report)
    })
    worker.on('error', (err) => this.logger.error({ err: err.message }, 'MLflow tracing: the export thread failed'))
    worker.on('exit', () => this.stopped(worker))
    this.worker = worker
    return worker
  }

  private reported (report: PipelineReport): void {
    this.received = report.received
    this.last = report.stats
    this.joinable = report.canJoin
    for (const id of report.settled) this.settle(id)
    for (const answer of report.answers) this.answered(answer)
    this.keepAlive()
  }

  private answered (answer: PipelineAnswer): void {
    const waiting = this.waiting.get(answer.id)
    this.waiting.delete(answer.id)
    if (answer.error === undefined) waiting?.resolve(answer.value)
    else waiting?.reject(errorFromShape(answer.error))
  }

  /** Ref'd while traces are on their way, calls wait or exports are in flight. */
  private keepAlive (): void {
    const busy = this.waiting.size > 0 || this.posted > this.received || this.last.inFlight > 0
    if (busy) this.worker?.ref()
    else this.worker?.unref()
  }

  private stopped (worker: Worker): void {
    if (this.worker !== worker) return
    this.worker = undefined
    if (this.stopping) return
    const { last } = this
    const held = last.queued + last.inFlight + this.posted - this.received
    this.carried = addCounts(this.carried, last)
    this.posted = this.received = 0
    this.last = emptyStats(this.data.options.queue)
    this.lose('failed', held, new Error('the export thread stopped'))
    for (const id of [...this.waiting.keys()]) this.answered({ id, error: { message: 'MLflow tracing: the export thread stopped' } })
  }

  private lose (reason: DropReason, count: number, err?: unknown): void {
    if (count === 0) return
    this.carried.dropped[reason] += count
    const detail = err instanceof Error ? err.message : err === undefined ? undefined : String(err)
    this.warnings.warn(reason, () => ({ reason, count, detail, stats: this.stats() }), `MLflow trace dropped: ${reason}`)
  }
}

function addCounts (a: ExportCounts, b: ExportCounts): ExportCounts {
  return { exported: a.exported + b.exported, retried: a.retried + b.retried, dropped: sum(a.dropped, b.dropped), overflowed: sum(a.overflowed, b.overflowed) }
}

function sum<K extends string> (a: Record<K, number>, b: Record<K, number>): Record<K, number> {
  const total = { ...a }
  for (const key in b) total[key] += b[key]
  return total
}
