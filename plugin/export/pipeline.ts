import { settling } from '../feedback/pending-traces'
import type { TraceRecord } from '../trace/trace-record'
import { MlflowClient } from './client'
import type { Destination } from './config'
import { MlflowHttpError } from './http'
import type { Logger } from './logger'
import { MlflowSink } from './mlflow-sink'
import { ExportQueue, type ExportStats, type QueueOptions, type TraceSink } from './queue'
import { DiskSpool, type SpoolStats } from './spool/disk-spool'
import { destinationDir, type SpoolSettings } from './spool/options'

export type MlflowDestination = Extract<Destination, { kind: 'mlflow' }>

export interface PipelineStats extends ExportStats {
  /** With a spool: what waits on disk, and what was written, replayed and lost there. */
  spool?: SpoolStats
}

/** What start() found, for the start-up log line. */
export interface PipelineStart {
  /** How spans reach the destination and what the spool holds, in words ('' for nothing to say). */
  detail: string
  spooled?: number
  /** The experiment, where start() could find it. */
  experimentId?: string
}

/** Finished traces in; exports, spooling and their counts out. In this thread or behind a worker. */
export interface TracePipeline {
  push: (trace: TraceRecord) => void
  start: () => Promise<PipelineStart>
  experimentId: () => Promise<string | undefined>
  /** Whether a trace may join an upstream one (it needs OTLP), as known so far. */
  readonly canJoin: boolean
  stats: () => PipelineStats
  flush: (timeoutMs: number) => Promise<boolean>
  shutdown: (timeoutMs: number) => Promise<boolean>
}

export interface PipelineParts {
  sink: TraceSink
  /** Set when the sink is the tracking server's. */
  mlflow?: MlflowSink
  spool?: DiskSpool
  queue?: QueueOptions
  logger: Logger
  /** Called with the id of each trace exported or refused for good, for feedback waiting on it. */
  settle?: (id: string) => void
}

/** The queue, the sink and the spool on this thread. */
export class ExportPipeline implements TracePipeline {
  private readonly queue: ExportQueue
  private readonly mlflow: MlflowSink | undefined
  private readonly spool: DiskSpool | undefined
  private readonly logger: Logger

  constructor (parts: PipelineParts) {
    this.mlflow = parts.mlflow
    this.spool = parts.spool
    this.logger = parts.logger
    const sink = parts.settle === undefined ? parts.sink : settling(parts.sink, parts.settle)
    this.queue = new ExportQueue(sink, parts.logger, parts.queue, parts.spool)
  }

  push (trace: TraceRecord): void {
    this.queue.push(trace)
  }

  /**
   * Checks the destination and reads the spool. Bad credentials, a missing experiment and a
   * server too old throw; a server that cannot be reached only warns, since traces queue and retry.
   */
  async start (): Promise<PipelineStart> {
    let detail = ''
    let experimentId: string | undefined
    if (this.mlflow !== undefined) {
      try {
        experimentId = await this.mlflow.experimentId()
        const { upload, serverVersion } = await this.mlflow.spanUpload()
        detail = `; spans ${upload === 'otlp' ? 'over OTLP into the span store' : 'as traces.json artifacts'}` +
          (serverVersion === undefined ? '' : ` (MLflow ${serverVersion})`)
      } catch (err) {
        if (!(err instanceof MlflowHttpError)) throw err
        this.logger.warn({ err: err.message }, 'MLflow server not reachable at start-up; traces will queue and retry')
      }
    }
    const spooled = await this.spool?.open()
    this.queue.wake()
    if (this.spool !== undefined) detail += `; ${spooled ?? 0} spooled traces found in ${this.spool.dir}`
    return { detail, spooled, experimentId }
  }

  async experimentId (): Promise<string | undefined> {
    return await this.mlflow?.experimentId()
  }

  get canJoin (): boolean {
    return this.mlflow?.canJoin ?? true
  }

  stats (): PipelineStats {
    const stats: PipelineStats = this.queue.stats()
    if (this.spool !== undefined) stats.spool = this.spool.stats()
    return stats
  }

  async flush (timeoutMs: number): Promise<boolean> {
    return await this.queue.flush(timeoutMs)
  }

  async shutdown (timeoutMs: number): Promise<boolean> {
    return await this.queue.shutdown(timeoutMs)
  }
}

/** The tracking server's pipeline: its sink, and a spool of its own when one is set. */
export function mlflowPipeline (dest: MlflowDestination, spool: SpoolSettings | undefined, parts: Omit<PipelineParts, 'sink'>): ExportPipeline {
  const client = mlflowClient(dest)
  const mlflow = new MlflowSink(client, dest.databricks, {
    experimentId: dest.experimentId, experimentName: dest.experimentName, credentialSetting: credentialSetting(dest.authKind)
  }, dest.spanUpload, parts.logger)
  const target = { host: dest.host, experimentId: dest.experimentId, experimentName: dest.experimentName }
  return new ExportPipeline({ ...parts, sink: mlflow, mlflow, spool: spool === undefined ? undefined : openSpool(spool, target, parts.logger) })
}

/** A client of the destination; each thread that calls it builds its own. */
export function mlflowClient (dest: MlflowDestination): MlflowClient {
  return new MlflowClient({ host: dest.host, auth: dest.auth, timeoutMs: dest.timeoutMs, workspace: dest.workspace })
}

/** A spool per destination: replay must send a trace where it was meant to go, never elsewhere. */
export function openSpool (settings: SpoolSettings, target: { host: string, experimentId?: string, experimentName?: string }, logger: Logger): DiskSpool {
  return new DiskSpool(destinationDir(settings.dir, target), settings.maxBytes, logger, target)
}

function credentialSetting (kind: MlflowDestination['authKind']): string {
  switch (kind) {
    case 'basic': return 'MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD'
    case 'bearer': return 'MLFLOW_TRACKING_TOKEN'
    case 'databricks-pat': return 'DATABRICKS_TOKEN'
    case 'databricks-oauth': return 'DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET'
    case 'none': return 'no credentials (set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)'
  }
}
