import type { AssessmentJson } from '../export/client'

/** What feedback needs to know about a stored trace. */
export interface FeedbackTarget {
  /** `mlflow.trace.user` of the trace; undefined for a trace without one. */
  user: string | undefined
  assessments: AssessmentJson[]
}

/** Where assessments live: the tracking server, or the embedded default's file. */
export interface FeedbackStore {
  /** undefined when the destination has no such trace (yet). */
  target: (traceId: string, signal: AbortSignal) => Promise<FeedbackTarget | undefined>
  create: (traceId: string, assessment: AssessmentJson, signal: AbortSignal) => Promise<AssessmentJson>
  /** Replaces value, rationale and metadata of an assessment. */
  update: (traceId: string, assessmentId: string, assessment: AssessmentJson, signal: AbortSignal) => Promise<AssessmentJson>
  remove: (traceId: string, assessmentId: string, signal: AbortSignal) => Promise<void>
}
