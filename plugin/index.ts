import { context } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { deploymentMetadata } from './context/deployment'
import { resolveUser } from './context/user'
import { createLifecycle, kState, type LifecycleCounters } from './lifecycle'
import { validateOptions, type FastifyMlflowTracingOptions } from './options'
import { NOOP_REQUEST_TRACE } from './trace/noop-request-trace'
import type { RequestTrace } from './trace/request-trace'
import { MlflowTracing } from './tracing'
import './types'

const plugin: FastifyPluginAsync<FastifyMlflowTracingOptions> = async (fastify, opts) => {
  const settings = validateOptions(opts, process.env)
  const owned = opts.tracing === undefined
  const tracing = opts.tracing ?? new MlflowTracing({ logger: fastify.log, ...opts })
  let counters: LifecycleCounters = { invalidSessions: 0, hookErrors: 0 }

  // The feedback request's own user: its trace's, or (untraced) the same chain asked directly.
  const userOf = (request: FastifyRequest): string | undefined => request.mlflow?.user ?? resolveUser(request, settings.user)?.user
  fastify.decorate('mlflowTracing', {
    tracing,
    stats: () => ({ ...tracing.stats(), ...counters }),
    feedback: async (request, input, options) => await tracing.feedback.record(userOf(request), input, options),
    deleteFeedback: async (request, input, options) => await tracing.feedback.remove(userOf(request), input, options)
  })
  fastify.addHook('onClose', async function flushTraces () {
    const done = owned ? await tracing.shutdown(settings.flushTimeoutMs) : await tracing.flush(settings.flushTimeoutMs)
    if (!done) fastify.log.warn({ stats: tracing.stats() }, 'MLflow tracing: not every trace was exported before the deadline')
  })

  if (!settings.enabled) {
    // Off: no hooks, no context manager, and a handle that does nothing, so route code runs unchanged.
    fastify.decorateRequest('mlflow', { getter: () => NOOP_REQUEST_TRACE })
    fastify.log.info('MLflow tracing is disabled')
    return
  }

  // Deployment metadata (which may ask `git`) is worked out only when tracing is on.
  const fixedMetadata = typeof settings.metadata === 'object' ? settings.metadata : {}
  const sharedMetadata = { ...deploymentMetadata(process.env), ...fixedMetadata }
  // Fastify's null logger (logger: false) is its own child: no line could carry the trace id.
  const logsTraceId = fastify.log.child({}) !== fastify.log
  const lifecycle = createLifecycle(settings, tracing.tracer, sharedMetadata, opts.logger ?? fastify.log, logsTraceId)
  counters = lifecycle.counters

  // Spans are only "active" if a context manager carries them across awaits; keep the app's own if it has one.
  // AsyncLocalStorage costs nothing until a span is first made active.
  const manager = new AsyncLocalStorageContextManager().enable()
  if (!context.setGlobalContextManager(manager)) manager.disable()

  // null first, the request's handle in onRequest: Fastify 5 forbids shared objects as decorator defaults.
  fastify.decorateRequest('mlflow', null as unknown as RequestTrace)
  fastify.decorateRequest(kState, null)
  fastify.addHook('onRequest', lifecycle.onRequest)
  if (settings.activeRootSpan) fastify.addHook('preHandler', lifecycle.preHandler)
  fastify.addHook('onError', lifecycle.onError)
  fastify.addHook('onSend', lifecycle.onSend)
  // Fastify adds per-request work for onTimeout hooks; a socket can only time out if connectionTimeout is set.
  if ((fastify.initialConfig.connectionTimeout ?? 0) > 0) fastify.addHook('onTimeout', lifecycle.onTimeout)
  await tracing.start()
}

export const fastifyMlflowTracing = fp(plugin, { fastify: '5.x', name: 'fastify-mlflow-tracing' })
export default fastifyMlflowTracing

export type { FastifyMlflowTracingOptions, RouteTracingConfig } from './options'
export type { FastifyMlflowTracing } from './types'
export type { RequestTrace, ChildSpanOptions } from './trace/request-trace'
export type { LlmRequest, LlmResponse } from './trace/genai'
export type { DistributedTracing } from './trace/distributed'
export type { UserSource } from './context/user'
export type { LifecycleCounters } from './lifecycle'
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
