import type { AssessmentJson, MlflowClient } from '../export/client'
import { MlflowHttpError } from '../export/http'
import { FST_MLFLOW_UNSUPPORTED_SERVER } from '../errors'
import { TraceMetadata } from '../trace/constants'
import type { FeedbackStore, FeedbackTarget } from './store'

/** The first MLflow version with the assessments API. */
const ASSESSMENTS_SINCE = '3.2'

/** Assessments through the tracking server's REST API (OSS 3.2+ and Databricks). */
export class MlflowFeedbackStore implements FeedbackStore {
  constructor (private readonly client: MlflowClient) {}

  async target (traceId: string, signal: AbortSignal): Promise<FeedbackTarget | undefined> {
    try {
      const info = await this.client.getTraceInfo(traceId, signal)
      return { user: info.trace_metadata[TraceMetadata.USER], assessments: info.assessments ?? [] }
    } catch (err) {
      if (err instanceof MlflowHttpError && err.errorCode === 'RESOURCE_DOES_NOT_EXIST') return undefined
      throw this.tooOld(err)
    }
  }

  async create (traceId: string, assessment: AssessmentJson, signal: AbortSignal): Promise<AssessmentJson> {
    return await this.client.createAssessment(traceId, assessment, signal).catch(err => { throw this.tooOld(err) })
  }

  async update (traceId: string, assessmentId: string, assessment: AssessmentJson, signal: AbortSignal): Promise<AssessmentJson> {
    const { feedback, rationale = '', metadata = {} } = assessment
    // An empty rationale clears the old one: a new rating without a comment keeps no stale comment.
    return await this.client.updateAssessment(traceId, assessmentId, { feedback, rationale, metadata }, ['feedback', 'rationale', 'metadata'], signal)
      .catch(err => { throw this.tooOld(err) })
  }

  async remove (traceId: string, assessmentId: string, signal: AbortSignal): Promise<void> {
    await this.client.deleteAssessment(traceId, assessmentId, signal).catch(err => { throw this.tooOld(err) })
  }

  // A server without the route answers a bare 404 (an HTML page, or ENDPOINT_NOT_FOUND), not
  // MLflow's RESOURCE_DOES_NOT_EXIST.
  private tooOld (err: unknown): unknown {
    if (err instanceof MlflowHttpError && err.status === 404 && (err.errorCode === 'HTTP_ERROR' || err.errorCode === 'ENDPOINT_NOT_FOUND')) {
      return new FST_MLFLOW_UNSUPPORTED_SERVER(this.client.host, `${ASSESSMENTS_SINCE} (the assessments API)`)
    }
    return err
  }
}
