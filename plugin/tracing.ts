import type { MlflowClient } from './export/client'
import { resolveDestination, type Destination, type DestinationOptions } from './export/config'
import { FileSink } from './export/file-sink'
import { stderrLogger, type Logger } from './export/logger'
import { mayJoin } from './export/mlflow-sink'
import { ExportPipeline, mlflowClient, openSpool, type PipelineStats, type TracePipeline } from './export/pipeline'
import { PipelineThread, type PipelineWorkerData } from './export/pipeline-thread'
import { checkQueueOptions, type QueueOptions, type TraceSink } from './export/queue'
import { resolveSpool } from './export/spool/options'
import { FST_MLFLOW_INVALID_OPTION } from './errors'
import { TraceFeedback } from './feedback/feedback'
import { FileFeedbackStore } from './feedback/file-store'
import { MlflowFeedbackStore } from './feedback/mlflow-store'
import { PendingTraces } from './feedback/pending-traces'
import type { FeedbackStore } from './feedback/store'
import { distributedTracingMode, type DistributedTracing } from './trace/distributed'
import { MlflowTracer } from './trace/tracer'

export interface MlflowTracingOptions extends DestinationOptions {
  queue?: QueueOptions
  logger?: Logger
  /** Replaces the destination the options and environment describe (e.g. a MemorySink in tests). */
  sink?: TraceSink
  /**
   * `MLFLOW_DISTRIBUTED_TRACING`: what a request under a W3C `traceparent` becomes. `separate`
   * (default): an MLflow trace of its own. `join`: spans in the caller's MLflow trace, for callers
   * that trace into the same MLflow experiment (see the README's "Distributed traces").
   */
  distributedTracing?: DistributedTracing
}

export interface MlflowTracingStats extends PipelineStats {
  /** Spans started under a trace that had already ended; they are not exported. */
  lateSpans: number
}

/**
 * The trace client: a tracer whose finished traces are exported in the background. A tracking
 * server's export runs on a worker thread (see PipelineThread); a local file and a custom sink are
 * written on this one.
 */
export class MlflowTracing {
  readonly tracer: MlflowTracer
  /** Set when traces go to a tracking server. */
  readonly client: MlflowClient | undefined
  /** Where traces go, in words, for the start-up log line. */
  readonly destination: string
  /** End-user feedback on traces, stored where the traces go (not with a custom sink). */
  readonly feedback: TraceFeedback
  private readonly pipeline: TracePipeline
  private readonly logger: Logger

  constructor (opts: MlflowTracingOptions = {}, env: Record<string, string | undefined> = process.env) {
    this.logger = opts.logger ?? stderrLogger
    checkQueueOptions(opts.queue)
    const dest: Destination | undefined = opts.sink === undefined ? resolveDestination(opts, env) : undefined
    const spool = resolveSpool(opts.spool, env)
    const pending = new PendingTraces()
    const settle = (id: string): void => pending.settle(id)
    let feedbackStore: FeedbackStore | undefined
    if (dest?.kind === 'mlflow') {
      this.client = mlflowClient(dest)
      feedbackStore = new MlflowFeedbackStore(this.client)
      const experiment = dest.experimentId !== undefined ? `experiment ${dest.experimentId}` : `experiment '${dest.experimentName ?? ''}'`
      this.destination = `MLflow at ${dest.host}, ${experiment}`
      this.pipeline = new PipelineThread(workerData(opts, env), mayJoin(dest.databricks, dest.spanUpload), this.logger, settle)
    } else if (dest?.kind === 'file') {
      feedbackStore = new FileFeedbackStore(dest.path)
      this.destination = `local file ${dest.path} (no tracking URI configured)`
      // A local file needs no spool: writing it is what the spool would do.
      this.pipeline = new ExportPipeline({ sink: new FileSink(dest.path), queue: opts.queue, logger: this.logger, settle })
    } else {
      this.destination = 'a custom sink'
      // A custom sink's traces spool to a directory of their own.
      this.pipeline = new ExportPipeline({
        sink: opts.sink as TraceSink,
        spool: spool === undefined ? undefined : openSpool(spool, { host: 'custom-sink' }, this.logger),
        queue: opts.queue,
        logger: this.logger
      })
    }
    this.feedback = new TraceFeedback(feedbackStore, pending)
    this.tracer = new MlflowTracer(trace => {
      if (feedbackStore !== undefined) pending.add(trace.id)
      this.pipeline.push(trace)
    }, distributedTracingMode(opts.distributedTracing, env), () => this.pipeline.canJoin)
  }

  /**
   * Checks the destination and says where traces go and how spans get there. Bad credentials, a
   * missing experiment and a server too old throw; a server that cannot be reached only warns,
   * since traces queue and retry.
   */
  async start (): Promise<void> {
    const { detail, spooled } = await this.pipeline.start()
    this.logger.info({ destination: this.destination, spooled }, `MLflow tracing: traces go to ${this.destination}${detail}`)
  }

  /** The experiment traces go to (undefined for a file or custom sink). */
  async experimentId (): Promise<string | undefined> {
    return await this.pipeline.experimentId()
  }

  stats (): MlflowTracingStats {
    return { ...this.pipeline.stats(), lateSpans: this.tracer.lateSpans }
  }

  async flush (timeoutMs = 10_000): Promise<boolean> {
    return await this.pipeline.flush(timeoutMs)
  }

  async shutdown (timeoutMs = 10_000): Promise<boolean> {
    return await this.pipeline.shutdown(timeoutMs)
  }
}

/** What the export thread is built from; cloned now, so that a value that cannot cross fails at registration. */
function workerData (opts: MlflowTracingOptions, env: Record<string, string | undefined>): PipelineWorkerData {
  const { logger, sink, distributedTracing, ...options } = opts
  try {
    return structuredClone({ options, env: { ...env } })
  } catch (err) {
    throw new FST_MLFLOW_INVALID_OPTION('options', `expected plain values (strings, numbers, objects of them): ${String(err)}`)
  }
}
