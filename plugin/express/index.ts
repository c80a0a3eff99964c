import { validateRouteConfig } from '../core/options'
import { setUpTracing } from '../core/setup'
import { stderrLogger } from '../export/logger'
import { NOOP_REQUEST_TRACE } from '../trace/noop-request-trace'
import { expressMiddleware, expressRequests } from './middleware'
import type { ExpressMlflowTracing, ExpressMlflowTracingOptions } from './types'

/**
 * `app.use(mlflowTracing(options))` before the routes (after pino-http, for trace ids in its log
 * lines), `app.use(tracing.errorHandler)` after them, and `await tracing.close()` on SIGTERM once
 * the server is closed. Options are checked here: a bad one throws a coded TypeError.
 */
export function mlflowTracing (opts: ExpressMlflowTracingOptions = {}): ExpressMlflowTracing {
  const logger = opts.logger ?? stderrLogger
  const { tracing, core, stats, close, feedback, deleteFeedback } = setUpTracing(opts, logger, expressRequests)
  let started: Promise<void> | undefined
  const ready = async (): Promise<void> => { await (started ??= core === undefined ? Promise.resolve() : tracing.start()) }
  // Started now, so that a server that is never awaited still says where traces go.
  ready().catch((err: Error) => { logger.error({ err: err.message }, 'MLflow tracing: the destination refused the configuration') })

  const { middleware, errorHandler, route } = core === undefined ? untraced() : expressMiddleware(core)
  return Object.assign(middleware, { errorHandler, route, tracing, ready, stats, close, feedback, deleteFeedback })
}

/** Off: a handle that does nothing, so route code runs unchanged. */
function untraced (): ReturnType<typeof expressMiddleware> {
  return {
    route: config => {
      validateRouteConfig(config)
      return (_req, _res, next) => { next() }
    },
    middleware: (req, _res, next) => {
      req.mlflow = NOOP_REQUEST_TRACE
      next()
    },
    errorHandler: (err, _req, _res, next) => { next(err) }
  }
}

export default mlflowTracing
export type { ExpressMlflowTracing, ExpressMlflowTracingOptions } from './types'
export type { RouteTracingConfig } from '../core/options'
export type { RequestTrace, ChildSpanOptions } from '../trace/request-trace'
export type { LlmRequest, LlmResponse } from '../trace/genai'
export type { LifecycleCounters } from '../core/problems'
export type { FeedbackOptions, FeedbackResult } from '../feedback/feedback'
export type { FeedbackInput, FeedbackValue } from '../feedback/input'
export { GenAi } from '../trace/genai'
export { MlflowTracing, type MlflowTracingOptions, type MlflowTracingStats } from '../tracing'
export { MemorySink } from '../export/memory-sink'
export { FileSink } from '../export/file-sink'
export { SpanType, SpanAttribute, TraceMetadata, TraceTag } from '../trace/constants'
export { FST_MLFLOW_INVALID_OPTION } from '../errors'
