import { MlflowClient } from './export/client'
import { resolveDestination, type Destination, type DestinationOptions } from './export/config'
import { FileSink } from './export/file-sink'
import { MlflowHttpError } from './export/http'
import { stderrLogger, type Logger } from './export/logger'
import { MlflowSink } from './export/mlflow-sink'
import { ExportQueue, type ExportStats, type QueueOptions, type TraceSink } from './export/queue'
import { DiskSpool, type SpoolStats } from './export/spool/disk-spool'
import { destinationDir, resolveSpool } from './export/spool/options'
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

export interface MlflowTracingStats extends ExportStats {
  /** Spans started under a trace that had already ended; they are not exported. */
  lateSpans: number
  /** With a spool: what waits on disk, and what was written, replayed and lost there. */
  spool?: SpoolStats
}

/** The trace client: a tracer whose finished traces are exported in the background. */
export class MlflowTracing {
  readonly tracer: MlflowTracer
  /** Set when traces go to a tracking server. */
  readonly client: MlflowClient | undefined
  /** Where traces go, in words, for the start-up log line. */
  readonly destination: string
  /** End-user feedback on traces, stored where the traces go (not with a custom sink). */
  readonly feedback: TraceFeedback
  private readonly queue: ExportQueue
  private readonly mlflowSink: MlflowSink | undefined
  private readonly logger: Logger
  private readonly spool: DiskSpool | undefined

  constructor (opts: MlflowTracingOptions = {}, env: Record<string, string | undefined> = process.env) {
    this.logger = opts.logger ?? stderrLogger
    const dest: Destination | undefined = opts.sink === undefined ? resolveDestination(opts, env) : undefined
    let sink = opts.sink
    let feedbackStore: FeedbackStore | undefined
    if (dest?.kind === 'file') {
      sink = new FileSink(dest.path)
      feedbackStore = new FileFeedbackStore(dest.path)
      this.destination = `local file ${dest.path} (no tracking URI configured)`
    } else if (dest?.kind === 'mlflow') {
      this.client = new MlflowClient({ host: dest.host, auth: dest.auth, timeoutMs: dest.timeoutMs, workspace: dest.workspace })
      this.mlflowSink = new MlflowSink(this.client, dest.databricks, {
        experimentId: dest.experimentId, experimentName: dest.experimentName, credentialSetting: credentialSetting(dest.authKind)
      }, dest.spanUpload, this.logger)
      sink = this.mlflowSink
      feedbackStore = new MlflowFeedbackStore(this.client)
      const experiment = dest.experimentId !== undefined ? `experiment ${dest.experimentId}` : `experiment '${dest.experimentName ?? ''}'`
      this.destination = `MLflow at ${dest.host}, ${experiment}`
    } else {
      this.destination = 'a custom sink'
    }
    const pending = new PendingTraces()
    this.feedback = new TraceFeedback(feedbackStore, pending)
    this.spool = this.openSpool(opts, env, dest)
    this.queue = new ExportQueue(feedbackStore === undefined ? sink as TraceSink : pending.settling(sink as TraceSink), this.logger, opts.queue, this.spool)
    this.tracer = new MlflowTracer(trace => {
      if (feedbackStore !== undefined) pending.add(trace.id)
      this.queue.push(trace)
    }, distributedTracingMode(opts.distributedTracing, env),
      () => this.mlflowSink?.canJoin ?? true)
  }

  /**
   * Checks the destination and says where traces go and how spans get there. Bad credentials, a
   * missing experiment and a server too old throw; a server that cannot be reached only warns,
   * since traces queue and retry.
   */
  async start (): Promise<void> {
    let how = ''
    if (this.mlflowSink !== undefined) {
      try {
        await this.mlflowSink.experimentId()
        const { upload, serverVersion } = await this.mlflowSink.spanUpload()
        how = `; spans ${upload === 'otlp' ? 'over OTLP into the span store' : 'as traces.json artifacts'}` +
          (serverVersion === undefined ? '' : ` (MLflow ${serverVersion})`)
      } catch (err) {
        if (!(err instanceof MlflowHttpError)) throw err
        this.logger.warn({ err: err.message }, 'MLflow server not reachable at start-up; traces will queue and retry')
      }
    }
    const spooled = await this.spool?.open()
    this.queue.wake()
    const spool = this.spool === undefined ? '' : `; ${spooled ?? 0} spooled traces found in ${this.spool.dir}`
    this.logger.info({ destination: this.destination, spooled }, `MLflow tracing: traces go to ${this.destination}${how}${spool}`)
  }

  /** The experiment traces go to (undefined for a file or custom sink). */
  async experimentId (): Promise<string | undefined> {
    return await this.mlflowSink?.experimentId()
  }

  stats (): MlflowTracingStats {
    const stats: MlflowTracingStats = { ...this.queue.stats(), lateSpans: this.tracer.lateSpans }
    if (this.spool !== undefined) stats.spool = this.spool.stats()
    return stats
  }

  async flush (timeoutMs = 10_000): Promise<boolean> {
    return await this.queue.flush(timeoutMs)
  }

  async shutdown (timeoutMs = 10_000): Promise<boolean> {
    return await this.queue.shutdown(timeoutMs)
  }

  /** A spool per destination (a custom sink's traces go to a directory of their own); a local file needs none. */
  private openSpool (opts: MlflowTracingOptions, env: Record<string, string | undefined>, dest: Destination | undefined): DiskSpool | undefined {
    const settings = resolveSpool(opts.spool, env)
    if (settings === undefined || dest?.kind === 'file') return undefined
    const target = dest === undefined ? { host: 'custom-sink' } : { host: dest.host, experimentId: dest.experimentId, experimentName: dest.experimentName }
    return new DiskSpool(destinationDir(settings.dir, target), settings.maxBytes, this.logger, target)
  }
}

function credentialSetting (kind: Extract<Destination, { kind: 'mlflow' }>['authKind']): string {
  switch (kind) {
    case 'basic': return 'MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD'
    case 'bearer': return 'MLFLOW_TRACKING_TOKEN'
    case 'databricks-pat': return 'DATABRICKS_TOKEN'
    case 'databricks-oauth': return 'DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET'
    case 'none': return 'no credentials (set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)'
  }
}
