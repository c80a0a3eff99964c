import type { Logger } from '../export/logger'
import type { MlflowTracer } from '../trace/tracer'
import type { Settings } from './options'
import { Problems } from './problems'
import type { CoreRequest } from './request'

/** What only the framework knows about its request; the rest of a trace's life is the core's. */
export interface FrameworkRequests<R extends CoreRequest> {
  /** The framework's request id: the `client_request_id` when the request carries none. */
  requestId: (request: R) => string
  /** The route pattern as routing found it, read when the trace ends (Express routes after middleware). */
  routeAtEnd?: (request: R) => string | undefined
  /** The parsed body the root's inputs come from, where it is not simply `request.body`. */
  body?: (request: R) => unknown
}

/** Everything one app's request traces share: its settings, tracer, metadata and problem counters. */
export interface TraceCore<R extends CoreRequest> {
  readonly settings: Settings<R>
  readonly tracer: MlflowTracer
  /** Metadata of every trace (deployment, fixed `metadata`), shared rather than copied. */
  readonly sharedMetadata: Record<string, string>
  readonly problems: Problems
  readonly framework: FrameworkRequests<R>
}

export function createTraceCore<R extends CoreRequest> (settings: Settings<R>, tracer: MlflowTracer, sharedMetadata: Record<string, string>,
  logger: Logger, framework: FrameworkRequests<R>): TraceCore<R> {
  return { settings, tracer, sharedMetadata, problems: new Problems(logger), framework }
}
