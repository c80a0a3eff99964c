import type { FastifyRequest } from 'fastify'
import type { RequestTracingOptions, RouteTracingConfig } from '../core/options'
import type { LifecycleCounters } from '../core/problems'
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
