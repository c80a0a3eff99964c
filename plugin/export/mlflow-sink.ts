import { FST_MLFLOW_INVALID_OPTION, FST_MLFLOW_SERVER_REJECTED } from '../errors'
import { TraceTag } from '../trace/constants'
import type { SerializedTrace } from '../trace/serialize'
import type { MlflowClient, StoredTraceInfo } from './client'
import { MlflowHttpError } from './http'
import type { TraceSink } from './queue'

export interface ExperimentRef {
  experimentId?: string
  experimentName?: string
  /** The setting that named the credentials, for error messages. */
  credentialSetting: string
}

/**
 * Sends a trace as the OSS server and Databricks expect it: StartTraceV3 with the full TraceInfo,
 * then the span document (artifact proxy on OSS, a signed URL on Databricks). A retry after a
 * failed span upload does not repeat StartTraceV3.
 */
export class MlflowSink implements TraceSink {
  private experiment: Promise<string> | undefined
  private readonly started = new WeakMap<SerializedTrace, StoredTraceInfo>()

  constructor (private readonly client: MlflowClient, private readonly databricks: boolean, private readonly ref: ExperimentRef) {}

  /** The experiment id; a name is found or created once. A transient failure is retried on the next call. */
  async experimentId (): Promise<string> {
    this.experiment ??= this.resolveExperiment().catch((err: unknown) => {
      this.experiment = undefined
      throw err
    })
    return await this.experiment
  }

  async export (trace: SerializedTrace, signal: AbortSignal): Promise<void> {
    let stored = this.started.get(trace)
    if (stored === undefined) {
      const experimentId = await this.experimentId()
      stored = await this.client.startTrace({ ...trace.info, trace_location: { type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: experimentId } } }, signal)
      this.started.set(trace, stored)
    }
    if (stored.tags[TraceTag.SPANS_LOCATION] === 'TRACKING_STORE') return
    if (this.databricks) await this.client.uploadSpansDatabricks(trace.traceId, trace.spansJson, signal)
    else await this.client.uploadSpans(stored, trace.spansJson, signal)
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
