import { FST_MLFLOW_INVALID_OPTION, FST_MLFLOW_SERVER_REJECTED } from '../errors'
import { TraceTag } from '../trace/constants'
import type { SerializedTrace } from '../trace/serialize'
import type { MlflowClient, StoredTraceInfo } from './client'
import { MlflowHttpError } from './http'
import type { Logger } from './logger'
import { OtlpBatcher } from './otlp-batcher'
import type { TraceSink } from './queue'
import { negotiateSpanUpload, otlpUnsupported, type Negotiated, type SpanUploadOption } from './span-upload'

export interface ExperimentRef {
  experimentId?: string
  experimentName?: string
  /** The setting that named the credentials, for error messages. */
  credentialSetting: string
}

/** What has reached the server of a trace whose export is being retried: no call is repeated. */
interface Progress {
  spansStored: boolean
  /** StartTraceV3's answer, parsed when read. */
  stored: (() => StoredTraceInfo) | undefined
}

/**
 * Sends a trace the way MLflow's own SDKs do: the spans over OTLP into the server's span store
 * (batched across traces), and StartTraceV3 with the full TraceInfo, which merges with the trace
 * row that the spans made: alongside them where the server allows it (one round trip per trace),
 * else after them. Where the server keeps no spans in its database, the span document goes as the
 * `traces.json` artifact instead (artifact proxy on OSS, a signed URL on Databricks). A
 * retry repeats only the calls that failed. A joined trace (an upstream service's) gets spans only.
 */
export class MlflowSink implements TraceSink {
  private experiment: Promise<string> | undefined
  private negotiated: Promise<Negotiated> | undefined
  /** Known to take no OTLP spans: negotiated so, or fallen back. */
  private noOtlp = false
  private readonly progress = new WeakMap<SerializedTrace, Progress>()
  private readonly batcher = new OtlpBatcher(async (body, signal) => {
    await this.client.logSpans(await this.experimentId(), body, signal)
  })

  constructor (
    private readonly client: MlflowClient,
    private readonly databricks: boolean,
    private readonly ref: ExperimentRef,
    private readonly spanUploadOption: SpanUploadOption,
    private readonly logger: Logger
  ) {}

  /** The experiment id; a name is found or created once. A transient failure is retried on the next call. */
  async experimentId (): Promise<string> {
    this.experiment ??= this.resolveExperiment().catch((err: unknown) => {
      this.experiment = undefined
      throw err
    })
    return await this.experiment
  }

  /** How spans reach this destination, worked out on first use; a transient failure is retried on the next call. */
  async spanUpload (): Promise<Negotiated> {
    this.negotiated ??= negotiateSpanUpload(this.client, this.databricks, this.spanUploadOption).then(n => {
      this.noOtlp ||= n.upload === 'artifact'
      return n
    }, (err: unknown) => {
      this.negotiated = undefined
      throw err
    })
    return await this.negotiated
  }

  /**
   * Joined traces need OTLP: without it, a trace of our own is the only way to keep the spans. As
   * known so far: a file store tells only at the first export (501).
   */
  get canJoin (): boolean {
    return mayJoin(this.databricks, this.spanUploadOption) && !this.noOtlp
  }

  /** A cheap read that goes through the server to its database, as every export does. */
  async probe (signal: AbortSignal): Promise<void> {
    await this.client.getExperiment(await this.experimentId(), signal)
  }

  async export (trace: SerializedTrace, signal: AbortSignal): Promise<void> {
    let progress = this.progress.get(trace)
    if (progress === undefined) this.progress.set(trace, progress = { spansStored: false, stored: undefined })
    const experimentId = await this.experimentId()
    const negotiated = await this.spanUpload()
    const spans = progress.spansStored || negotiated.upload !== 'otlp' ? undefined : this.sendSpans(trace, progress, signal)
    if (trace.record.joined) {
      await spans
      if (progress.spansStored) return
      throw new Error(`trace ${trace.traceId} joins an upstream trace, which needs OTLP span ingest; the server has none`)
    }
    if (negotiated.startWithSpans && spans !== undefined) {
      // Both calls end before the attempt does: a retry must not send again one still in flight.
      const outcomes = await Promise.allSettled([spans, this.storeInfo(trace, progress, experimentId, signal)])
      for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason
      // The span write marked where the spans are, whichever call came first.
      if (progress.spansStored) return
    } else {
      await spans
      await this.storeInfo(trace, progress, experimentId, signal)
    }
    const stored = (progress.stored as () => StoredTraceInfo)()
    // The server says where it keeps this trace's spans: in its database, they are there already.
    if (stored.tags[TraceTag.SPANS_LOCATION] === 'TRACKING_STORE') return
    if (this.databricks) await this.client.uploadSpansDatabricks(trace.traceId, trace.spansJson, signal)
    else await this.client.uploadSpans(stored, trace.spansJson, signal)
  }

  private async sendSpans (trace: SerializedTrace, progress: Progress, signal: AbortSignal): Promise<void> {
    try {
      await this.batcher.add(trace.record, signal)
      progress.spansStored = true
    } catch (err) {
      if (!otlpUnsupported(err)) throw err
      this.fallBack(err as MlflowHttpError)
    }
  }

  private async storeInfo (trace: SerializedTrace, progress: Progress, experimentId: string, signal: AbortSignal): Promise<void> {
    progress.stored ??= await this.startTrace(trace, experimentId, signal)
  }

  /**
   * StartTraceV3. A trace the server already has (replayed from the spool after a crash, or retried
   * after an answer that was lost) is merged by 3.4 and later; 3.2 and 3.3 refuse it on their
   * unique key instead, and the trace stored then is the one whose spans are still to be sent.
   */
  private async startTrace (trace: SerializedTrace, experimentId: string, signal: AbortSignal): Promise<() => StoredTraceInfo> {
    try {
      return await this.client.recordTrace({ ...trace.info, trace_location: { type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: experimentId } } }, signal)
    } catch (err) {
      if (!(err instanceof MlflowHttpError) || err.status !== 400 || !ALREADY_STORED.test(err.message)) throw err
      const stored = await this.client.getTraceInfo(trace.traceId)
      return () => stored
    }
  }

  /** Once the server says it cannot store spans, every later trace goes the artifact way. */
  private fallBack (err: MlflowHttpError): void {
    if (this.noOtlp) return
    this.noOtlp = true
    this.negotiated = this.negotiated?.then(n => ({ ...n, upload: 'artifact' as const, startWithSpans: false }))
    this.logger.warn({ err: err.message }, 'MLflow server cannot store spans in its database; spans go as traces.json artifacts from now on')
  }

  private async resolveExperiment (): Promise<string> {
    const { experimentId, experimentName } = this.ref
    try {
      if (experimentId === undefined) return await this.client.getOrCreateExperiment(experimentName as string)
      const experiment = await this.client.getExperiment(experimentId)
      if (experiment.lifecycle_stage !== 'active') {
        throw new FST_MLFLOW_INVALID_OPTION('experimentId (MLFLOW_EXPERIMENT_ID)', `experiment ${experimentId} is deleted`)
      }
      return experimentId
    } catch (err) {
      throw explain(err, this.ref)
    }
  }
}

/** Whether traces may join upstream ones before the server has said anything: OTLP is possible. */
export function mayJoin (databricks: boolean, spanUpload: SpanUploadOption): boolean {
  return !databricks && spanUpload !== 'artifact'
}

/** The database's words for a trace id it already has (SQLite, PostgreSQL, MySQL). */
const ALREADY_STORED = /UNIQUE constraint failed: trace_info\.request_id|duplicate key value violates unique constraint|Duplicate entry .* for key/

/** Turns a definitive server answer about our configuration into an error that names the setting. */
function explain (err: unknown, ref: ExperimentRef): unknown {
  if (!(err instanceof MlflowHttpError) || err.retryable) return err
  if (err.status === 401 || err.status === 403) return new FST_MLFLOW_SERVER_REJECTED(`the credentials from ${ref.credentialSetting}`, err.message)
  if (err.errorCode === 'RESOURCE_DOES_NOT_EXIST' || err.status === 404) {
    return ref.experimentId !== undefined
      ? new FST_MLFLOW_INVALID_OPTION('experimentId (MLFLOW_EXPERIMENT_ID)', `no experiment ${ref.experimentId} on the server: ${err.message}`)
      : new FST_MLFLOW_SERVER_REJECTED(`experiment name '${ref.experimentName ?? ''}'`, err.message)
  }
  if (err.errorCode === 'INVALID_PARAMETER_VALUE') {
    const setting = ref.experimentId !== undefined ? 'experimentId (MLFLOW_EXPERIMENT_ID)' : 'experimentName (MLFLOW_EXPERIMENT_NAME)'
    return new FST_MLFLOW_INVALID_OPTION(setting, err.message)
  }
  return err
}
