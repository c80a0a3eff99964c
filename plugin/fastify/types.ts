import type { FastifyRequest } from 'fastify'
import type { RequestTracingOptions, RouteTracingConfig } from '../core/options'
import type { LifecycleCounters } from '../core/problems'
import type { FeedbackOptions, FeedbackResult } from '../feedback/feedback'
import type { FeedbackInput } from '../feedback/input'
import type { RequestTrace } from '../trace/request-trace'
import type { MlflowTracing, MlflowTracingStats } from '../tracing'

/** The plugin's options: the per-request functions get the Fastify request. */
export interface FastifyMlflowTracingOptions extends RequestTracingOptions<FastifyRequest> {}

/** The app-level handle: `app.mlflowTracing`. */
export interface FastifyMlflowTracing {
  /** The trace client: its tracer, client (when a server is configured), flush and shutdown. */
  readonly tracing: MlflowTracing
  /** Export counters plus request-time problems the plugin absorbed. */
  stats: () => MlflowTracingStats & LifecycleCounters
  /**
   * Records the end user's feedback on a trace as a HUMAN assessment from the user resolved for
   * *this* request (the same trust-aware chain as `request.mlflow.user`); a second call of the same
   * user and name updates it. Throws coded errors: FST_MLFLOW_INVALID_FEEDBACK (400),
   * FST_MLFLOW_NO_TRUSTED_USER (401), FST_MLFLOW_NOT_TRACE_USER (403), FST_MLFLOW_TRACE_NOT_FOUND (404),
   * FST_MLFLOW_FEEDBACK_UNDELIVERED (503), FST_MLFLOW_UNSUPPORTED_SERVER.
   */
  feedback: (request: FastifyRequest, input: FeedbackInput, options?: FeedbackOptions) => Promise<FeedbackResult>
  /** Deletes this request's user's feedback of that name (default `user_feedback`); false if there was none. */
  deleteFeedback: (request: FastifyRequest, input: { traceId: string, name?: string }, options?: FeedbackOptions) => Promise<boolean>
}

declare module 'fastify' {
  interface FastifyRequest {
    /** This request's MLflow trace; a no-op handle (`traced: false`) when it is not traced. */
    mlflow: RequestTrace
  }
  interface FastifyContextConfig {
    /** `false` leaves the route untraced; an object overrides the root span type or body capture. */
    mlflow?: false | RouteTracingConfig
  }
  interface FastifyInstance {
    mlflowTracing: FastifyMlflowTracing
  }
}
