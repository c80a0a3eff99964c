import { context } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { deploymentMetadata } from '../context/deployment'
import { resolveUser } from '../context/user'
import type { FeedbackOptions, FeedbackResult } from '../feedback/feedback'
import type { FeedbackInput } from '../feedback/input'
import type { Logger } from '../export/logger'
import type { RequestTrace } from '../trace/request-trace'
import { MlflowTracing, type MlflowTracingStats } from '../tracing'
import { validateOptions, type RequestTracingOptions, type Settings } from './options'
import type { LifecycleCounters } from './problems'
import type { CoreRequest } from './request'
import { createTraceCore, type FrameworkRequests, type TraceCore } from './trace-core'

/** An app's tracing, as either adapter sets it up from the same options and environment. */
export interface TracingSetup<R extends CoreRequest> {
  readonly settings: Settings<R>
  readonly tracing: MlflowTracing
  /** Undefined when tracing is off: the adapter then adds only a no-op `request.mlflow`. */
  readonly core: TraceCore<R> | undefined
  /** Export counters plus request-time problems the adapter absorbed. */
  stats: () => MlflowTracingStats & LifecycleCounters
  /** Exports what is queued (and shuts down a tracing built here); warns when the deadline passed first. */
  close: () => Promise<boolean>
  /** End-user feedback on a trace, from the user this request resolves to (see FastifyMlflowTracing.feedback). */
  feedback: (request: R, input: FeedbackInput, options?: FeedbackOptions) => Promise<FeedbackResult>
  deleteFeedback: (request: R, input: { traceId: string, name?: string }, options?: FeedbackOptions) => Promise<boolean>
}

/** Validates the options (coded TypeErrors at start-up) and builds the tracing and the request-trace core. */
export function setUpTracing<R extends CoreRequest> (opts: RequestTracingOptions<R>, logger: Logger, framework: FrameworkRequests<R>): TracingSetup<R> {
  const settings = validateOptions(opts, process.env)
  const owned = opts.tracing === undefined
  const tracing = opts.tracing ?? new MlflowTracing({ logger, ...opts })
  const close = async (): Promise<boolean> => {
    const done = owned ? await tracing.shutdown(settings.flushTimeoutMs) : await tracing.flush(settings.flushTimeoutMs)
    if (!done) logger.warn({ stats: tracing.stats() }, 'MLflow tracing: not every trace was exported before the deadline')
    return done
  }
  // The feedback request's own user: its trace's, or (untraced) the same chain asked directly.
  const userOf = (request: R): string | undefined => (request as R & { mlflow?: RequestTrace }).mlflow?.user ?? resolveUser(request, settings.user)?.user
  const feedback = {
    feedback: async (request: R, input: FeedbackInput, options?: FeedbackOptions) => await tracing.feedback.record(userOf(request), input, options),
    deleteFeedback: async (request: R, input: { traceId: string, name?: string }, options?: FeedbackOptions) =>
      await tracing.feedback.remove(userOf(request), input, options)
  }
  if (!settings.enabled) {
    logger.info({}, 'MLflow tracing is disabled')
    return { settings, tracing, core: undefined, close, ...feedback, stats: () => ({ ...tracing.stats(), invalidSessions: 0, hookErrors: 0 }) }
  }

  // Deployment metadata (which may ask `git`) is worked out only when tracing is on.
  const fixedMetadata = typeof settings.metadata === 'object' ? settings.metadata : {}
  const sharedMetadata = { ...deploymentMetadata(process.env), ...fixedMetadata }
  const core = createTraceCore(settings, tracing.tracer, sharedMetadata, opts.logger ?? logger, framework)
  activateContexts()
  return { settings, tracing, core, close, ...feedback, stats: () => ({ ...tracing.stats(), ...core.problems.counters }) }
}

/**
 * Spans are only "active" if a context manager carries them across awaits; keep the app's own if it
 * has one. AsyncLocalStorage costs nothing until a span is first made active.
 */
function activateContexts (): void {
  const manager = new AsyncLocalStorageContextManager().enable()
  if (!context.setGlobalContextManager(manager)) manager.disable()
}
