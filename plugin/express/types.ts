import type { ErrorRequestHandler, Request, RequestHandler } from 'express'
import type { RequestTracingOptions, RouteTracingConfig } from '../core/options'
import type { LifecycleCounters } from '../core/problems'
import type { FeedbackOptions, FeedbackResult } from '../feedback/feedback'
import type { FeedbackInput } from '../feedback/input'
import type { RequestTrace } from '../trace/request-trace'
import type { MlflowTracing, MlflowTracingStats } from '../tracing'

/** The middleware's options: those of the Fastify plugin, the per-request functions getting the Express request. */
export interface ExpressMlflowTracingOptions extends RequestTracingOptions<Request> {}

/** `mlflowTracing(options)`: the middleware, with what an app needs around it. */
export interface ExpressMlflowTracing extends RequestHandler {
  /** In front of a route's handler: its root span type or body capture (`app.post('/chat', tracing.route({ spanType: 'AGENT' }), ...)`). */
  route: (config: RouteTracingConfig) => RequestHandler
  /** After the routes: records a route's exception on its trace, then passes it on to Express. */
  readonly errorHandler: ErrorRequestHandler
  /** The trace client: its tracer, client (when a server is configured), flush and shutdown. */
  readonly tracing: MlflowTracing
  /** Checks the destination, as the Fastify plugin does at registration: bad credentials or a missing experiment reject. */
  ready: () => Promise<void>
  /** Export counters plus request-time problems the middleware absorbed. */
  stats: () => MlflowTracingStats & LifecycleCounters
  /** On SIGTERM, once the server stopped taking requests: exports what is queued, within `flushTimeoutMs`. False if time ran out. */
  close: () => Promise<boolean>
  /**
   * Records the end user's feedback on a trace as a HUMAN assessment from the user resolved for
   * *this* request, with the coded errors of the Fastify plugin's `app.mlflowTracing.feedback`.
   */
  feedback: (req: Request, input: FeedbackInput, options?: FeedbackOptions) => Promise<FeedbackResult>
  /** Deletes this request's user's feedback of that name (default `user_feedback`); false if there was none. */
  deleteFeedback: (req: Request, input: { traceId: string, name?: string }, options?: FeedbackOptions) => Promise<boolean>
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** This request's MLflow trace; a no-op handle (`traced: false`) when it is not traced. */
      mlflow: RequestTrace
    }
  }
}
