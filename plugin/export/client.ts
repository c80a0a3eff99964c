import { TraceTag } from '../trace/constants'
import type { TraceInfoJson } from '../trace/serialize'
import type { AuthProvider } from './auth'
import { httpRequest, MlflowHttpError, type HttpRequest } from './http'

export interface ClientOptions {
  host: string
  auth: AuthProvider
  timeoutMs: number
  workspace?: string
}

/** A stored trace's info as the server returns it (TraceInfoV3). */
export interface StoredTraceInfo extends Omit<TraceInfoJson, 'assessments' | 'state'> {
  state: string
  assessments?: AssessmentJson[]
  trace_location: { type: string, mlflow_experiment?: { experiment_id: string } }
}

/** A TraceInfo to store, with the experiment it goes to. */
export type LocatedTraceInfo = TraceInfoJson & { trace_location: StoredTraceInfo['trace_location'] }

/** An assessment as the assessments API takes and returns it (a feedback; expectations are not used here). */
export interface AssessmentJson {
  assessment_id?: string
  assessment_name: string
  trace_id?: string
  /** source_type: HUMAN, LLM_JUDGE or CODE. */
  source: { source_type: string, source_id: string }
  create_time?: string
  last_update_time?: string
  /** The value is any JSON (a protobuf Value): the server stores it as it is. */
  feedback?: { value: unknown }
  rationale?: string
  metadata?: Record<string, string>
  valid?: boolean
}

/** Fields of an assessment that an update replaces (the server's update_mask paths). */
export type AssessmentField = 'assessment_name' | 'feedback' | 'rationale' | 'metadata' | 'valid'

export interface Experiment {
  experiment_id: string
  name: string
  artifact_location?: string
  lifecycle_stage: string
}

export interface SearchRequest {
  experimentIds: string[]
  filter?: string
  maxResults?: number
  orderBy?: string[]
  pageToken?: string
}

/** Databricks' answer to credentials-for-data-upload: where to PUT the span document. */
interface UploadCredential {
  type: string
  signed_uri: string
  headers?: Array<{ name: string, value: string }>
}

/** REST calls of MLflow's trace protocol (../shared/reference/mlflow-wire-protocol.md). */
export class MlflowClient {
  constructor (private readonly opts: ClientOptions) {}

  get host (): string {
    return this.opts.host
  }

  /** StartTraceV3; despite the name it records a finished trace. Returns the stored info. */
  async startTrace (info: LocatedTraceInfo, signal?: AbortSignal): Promise<StoredTraceInfo> {
    return (await this.recordTrace(info, signal))()
  }

  /**
   * StartTraceV3, its answer parsed only when asked for: the export needs it only where the spans
   * did not go to the span store, and parsing the whole TraceInfo back costs a tenth of a trace's CPU.
   */
  async recordTrace (info: LocatedTraceInfo, signal?: AbortSignal): Promise<() => StoredTraceInfo> {
    const text = await this.send('POST', '/api/3.0/mlflow/traces', { trace: { trace_info: info } }, signal)
    return () => (JSON.parse(text) as { trace: { trace_info: StoredTraceInfo } }).trace.trace_info
  }

  /** PUTs `traces.json` through the server's artifact proxy, at the location StartTraceV3 returned. */
  async uploadSpans (stored: StoredTraceInfo, spansJson: string, signal?: AbortSignal): Promise<void> {
    const location = stored.tags[TraceTag.ARTIFACT_LOCATION]
    if (location === undefined || !location.startsWith('mlflow-artifacts:')) {
      throw new MlflowHttpError(
        `trace ${stored.trace_id}: artifact location '${location ?? '(none)'}' is not served by the tracking server; ` +
        'start the server with --serve-artifacts (the default) and an mlflow-artifacts: artifact root', 400, 'ARTIFACTS_NOT_PROXIED')
    }
    // Only the path counts: a host in mlflow-artifacts://host/… is the server's own business.
    const path = new URL(location).pathname.replace(/^\/*/, '/')
    await this.call({ method: 'PUT', url: `${this.host}/api/2.0/mlflow-artifacts/artifacts${path}/traces.json`, body: spansJson, timeoutMs: this.opts.timeoutMs, signal })
  }

  /**
   * OTLP/HTTP into the server's span store (`/v1/traces`, MLflow 3.4+). The server stores the whole
   * request in one transaction: any failure fails every trace in it.
   */
  async logSpans (experimentId: string, body: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.call({
      method: 'POST',
      url: `${this.host}/v1/traces`,
      headers: { 'content-type': 'application/x-protobuf', 'x-mlflow-experiment-id': experimentId },
      body,
      timeoutMs: this.opts.timeoutMs,
      signal
    })
  }

  /** Databricks has no artifact proxy: it hands out a signed cloud-storage URL per trace. */
  async uploadSpansDatabricks (traceId: string, spansJson: string, signal?: AbortSignal): Promise<void> {
    const { credential_info: cred } = await this.json<{ credential_info: UploadCredential }>(
      'GET', `/api/2.0/mlflow/traces/${encodeURIComponent(traceId)}/credentials-for-data-upload`, undefined, signal)
    const headers: Record<string, string> = {}
    for (const h of cred.headers ?? []) headers[h.name] = h.value
    const timeoutMs = this.opts.timeoutMs
    // The signature is the credential: the workspace token never goes to the storage URL.
    switch (cred.type) {
      case 'AZURE_SAS_URI':
        await httpRequest({ method: 'PUT', url: cred.signed_uri, headers: { ...headers, 'x-ms-blob-type': 'BlockBlob', 'content-type': 'application/json' }, body: spansJson, timeoutMs, signal })
        return
      case 'AZURE_ADLS_GEN2_SAS_URI': {
        const bytes = Buffer.from(spansJson)
        await httpRequest({ method: 'PUT', url: `${cred.signed_uri}&resource=file`, headers, timeoutMs, signal })
        await httpRequest({ method: 'PATCH', url: `${cred.signed_uri}&action=append&position=0`, headers: { ...headers, 'content-type': 'application/octet-stream' }, body: bytes, timeoutMs, signal })
        await httpRequest({ method: 'PATCH', url: `${cred.signed_uri}&action=flush&position=${bytes.length}`, headers, timeoutMs, signal })
        return
      }
      default: // AWS_PRESIGNED_URL, GCP_SIGNED_URL
        await httpRequest({ method: 'PUT', url: cred.signed_uri, headers: { ...headers, 'content-type': 'application/json' }, body: spansJson, timeoutMs, signal })
    }
  }

  async searchTraces (req: SearchRequest): Promise<{ traces: StoredTraceInfo[], nextPageToken?: string }> {
    const body = await this.json<{ traces?: StoredTraceInfo[], next_page_token?: string }>('POST', '/api/3.0/mlflow/traces/search', {
      locations: req.experimentIds.map(id => ({ type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: id } })),
      filter: req.filter,
      max_results: req.maxResults,
      order_by: req.orderBy,
      page_token: req.pageToken
    })
    return { traces: body.traces ?? [], nextPageToken: body.next_page_token === '' ? undefined : body.next_page_token }
  }

  async getTraceInfo (traceId: string, signal?: AbortSignal): Promise<StoredTraceInfo> {
    const body = await this.json<{ trace: { trace_info: StoredTraceInfo } }>('GET', `/api/3.0/mlflow/traces/${encodeURIComponent(traceId)}`, undefined, signal)
    return body.trace.trace_info
  }

  /** CreateAssessment (MLflow 3.2+). The server never merges: every call adds an assessment. */
  async createAssessment (traceId: string, assessment: AssessmentJson, signal?: AbortSignal): Promise<AssessmentJson> {
    const body = await this.json<{ assessment: AssessmentJson }>('POST', assessmentsPath(traceId), { assessment }, signal)
    return body.assessment
  }

  /** UpdateAssessment: only the `fields` change; source and span are immutable. */
  async updateAssessment (traceId: string, assessmentId: string, assessment: Partial<AssessmentJson>, fields: AssessmentField[], signal?: AbortSignal): Promise<AssessmentJson> {
    const body = await this.json<{ assessment: AssessmentJson }>('PATCH', `${assessmentsPath(traceId)}/${encodeURIComponent(assessmentId)}`,
      { assessment, update_mask: fields.join(',') }, signal)
    return body.assessment
  }

  async deleteAssessment (traceId: string, assessmentId: string, signal?: AbortSignal): Promise<void> {
    await this.json('DELETE', `${assessmentsPath(traceId)}/${encodeURIComponent(assessmentId)}`, undefined, signal)
  }

  /** The `traces.json` document; the server reads it from the database or the artifact store. */
  async getTraceSpans (traceId: string): Promise<{ spans: Array<Record<string, unknown>> }> {
    return await this.json('GET', `/ajax-api/2.0/mlflow/get-trace-artifact?request_id=${encodeURIComponent(traceId)}`)
  }

  async setTraceTag (traceId: string, key: string, value: string): Promise<void> {
    await this.json('PATCH', `/api/3.0/mlflow/traces/${encodeURIComponent(traceId)}/tags`, { key, value })
  }

  async getExperiment (experimentId: string, signal?: AbortSignal): Promise<Experiment> {
    const body = await this.json<{ experiment: Experiment }>('GET', `/api/2.0/mlflow/experiments/get?experiment_id=${encodeURIComponent(experimentId)}`, undefined, signal)
    return body.experiment
  }

  /** undefined when no experiment has that name. */
  async getExperimentByName (name: string): Promise<Experiment | undefined> {
    try {
      const body = await this.json<{ experiment: Experiment }>('GET', `/api/2.0/mlflow/experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`)
      return body.experiment
    } catch (err) {
      if (err instanceof MlflowHttpError && err.errorCode === 'RESOURCE_DOES_NOT_EXIST') return undefined
      throw err
    }
  }

  async createExperiment (name: string, tags: Record<string, string> = {}): Promise<string> {
    const body = await this.json<{ experiment_id: string }>('POST', '/api/2.0/mlflow/experiments/create', {
      name, tags: Object.entries(tags).map(([key, value]) => ({ key, value }))
    })
    return body.experiment_id
  }

  /** Find-or-create, safe against another process creating the same name at the same moment. */
  async getOrCreateExperiment (name: string): Promise<string> {
    const found = await this.getExperimentByName(name)
    if (found !== undefined && found.lifecycle_stage === 'active') return found.experiment_id
    try {
      return await this.createExperiment(name)
    } catch (err) {
      if (!(err instanceof MlflowHttpError && err.errorCode === 'RESOURCE_ALREADY_EXISTS')) throw err
      const winner = await this.getExperimentByName(name)
      if (winner === undefined) throw err
      return winner.experiment_id
    }
  }

  /** The server's version as plain text, e.g. `3.17.2`. */
  async serverVersion (): Promise<string> {
    const res = await this.call({ method: 'GET', url: `${this.host}/version`, timeoutMs: this.opts.timeoutMs })
    return res.text.trim()
  }

  private async json<T> (method: HttpRequest['method'], path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const text = await this.send(method, path, body, signal)
    return (text === '' ? {} : JSON.parse(text)) as T
  }

  private async send (method: HttpRequest['method'], path: string, body?: unknown, signal?: AbortSignal): Promise<string> {
    const res = await this.call({
      method, url: this.host + path, timeoutMs: this.opts.timeoutMs, signal, body: body === undefined ? undefined : JSON.stringify(body)
    })
    return res.text
  }

  private async call (req: HttpRequest): Promise<{ status: number, text: string }> {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...req.headers }
    const authorization = await this.opts.auth()
    if (authorization !== undefined) headers.authorization = authorization
    if (this.opts.workspace !== undefined) headers['x-mlflow-workspace'] = this.opts.workspace
    return await httpRequest({ ...req, headers })
  }
}

function assessmentsPath (traceId: string): string {
  return `/api/3.0/mlflow/traces/${encodeURIComponent(traceId)}/assessments`
}
