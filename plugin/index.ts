import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { setUpTracing } from './core/setup'
import { fastifyHooks, kState } from './fastify/hooks'
import type { FastifyMlflowTracingOptions } from './fastify/types'
import { NOOP_REQUEST_TRACE } from './trace/noop-request-trace'
import type { RequestTrace } from './trace/request-trace'

const plugin: FastifyPluginAsync<FastifyMlflowTracingOptions> = async (fastify, opts) => {
  const { settings, tracing, core, stats, close, feedback, deleteFeedback } = setUpTracing(opts, fastify.log, { requestId: request => String(request.id) })
  fastify.decorate('mlflowTracing', { tracing, stats, feedback, deleteFeedback })
  fastify.addHook('onClose', async function flushTraces () { await close() })

  if (core === undefined) {
    // Off: no hooks, no context manager, and a handle that does nothing, so route code runs unchanged.
    fastify.decorateRequest('mlflow', { getter: () => NOOP_REQUEST_TRACE })
    return
  }

  // Fastify's null logger (logger: false) is its own child: no line could carry the trace id.
  const hooks = fastifyHooks(core, fastify.log.child({}) !== fastify.log)
  // null first, the request's handle in onRequest: Fastify 5 forbids shared objects as decorator defaults.
  fastify.decorateRequest('mlflow', null as unknown as RequestTrace)
  fastify.decorateRequest(kState, null)
  fastify.addHook('onRequest', hooks.onRequest)
  if (settings.activeRootSpan) fastify.addHook('preHandler', hooks.preHandler)
  fastify.addHook('onError', hooks.onError)
  fastify.addHook('onSend', hooks.onSend)
  // Fastify adds per-request work for onTimeout hooks; a socket can only time out if connectionTimeout is set.
  if ((fastify.initialConfig.connectionTimeout ?? 0) > 0) fastify.addHook('onTimeout', hooks.onTimeout)
  await tracing.start()
}

export const fastifyMlflowTracing = fp(plugin, { fastify: '5.x', name: 'fastify-mlflow-tracing' })
export default fastifyMlflowTracing

export type { RouteTracingConfig, RequestTracingOptions } from './core/options'
export type { FastifyMlflowTracing, FastifyMlflowTracingOptions } from './fastify/types'
export type { RequestTrace, ChildSpanOptions } from './trace/request-trace'
export type { LlmRequest, LlmResponse } from './trace/genai'
export type { DistributedTracing } from './trace/distributed'
export type { UserSource } from './context/user'
export type { LifecycleCounters } from './core/problems'
export { GenAi } from './trace/genai'
export { DeploymentMetadata } from './context/deployment'
export { MlflowTracing, type MlflowTracingOptions, type MlflowTracingStats } from './tracing'
export { MlflowClient, type AssessmentJson, type StoredTraceInfo, type Experiment, type SearchRequest } from './export/client'
export { findTraces, traceFilter, type TraceQuery } from './export/search'
export { MlflowHttpError } from './export/http'
export { TraceFeedback, type FeedbackOptions, type FeedbackResult } from './feedback/feedback'
export type { FeedbackInput, FeedbackValue } from './feedback/input'
export { readTracesFile } from './feedback/trace-file'
export type { DestinationOptions } from './export/config'
export type { SpanUploadOption } from './export/span-upload'
export type { QueueOptions, ExportStats, DropReason, TraceSink } from './export/queue'
export type { Logger } from './export/logger'
export { FileSink } from './export/file-sink'
export { MemorySink } from './export/memory-sink'
export { MlflowSpan, type TokenUsage } from './trace/span'
export { MlflowTracer } from './trace/tracer'
export { TraceRecord } from './trace/trace-record'
export { SpanType, SpanAttribute, TraceMetadata, TraceTag } from './trace/constants'
export type { SerializedTrace, TraceInfoJson } from './trace/serialize'
export {
  FST_MLFLOW_INVALID_OPTION, FST_MLFLOW_SERVER_REJECTED, FST_MLFLOW_TRACE_FINALIZED, FST_MLFLOW_UNSUPPORTED_SERVER,
  FST_MLFLOW_INVALID_FEEDBACK, FST_MLFLOW_TRACE_NOT_FOUND, FST_MLFLOW_NOT_TRACE_USER, FST_MLFLOW_NO_TRUSTED_USER, FST_MLFLOW_FEEDBACK_UNDELIVERED
} from './errors'
