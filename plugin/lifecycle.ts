import { context, SpanKind, SpanStatusCode, trace, type Context } from '@opentelemetry/api'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { captureBody, capturePayload, type Captured } from './context/capture'
import { clientRequestId } from './context/request-id'
import { sessionFrom } from './context/session'
import { StreamText, streamKind } from './context/stream-capture'
import { parentFromTraceparent } from './context/traceparent'
import { resolveUser } from './context/user'
import { ThrottledWarnings, type Logger } from './export/logger'
import type { RouteTracingConfig, Settings } from './options'
import { SpanAttribute, TraceMetadata, type SpanType } from './trace/constants'
import { NOOP_REQUEST_TRACE } from './trace/noop-request-trace'
import { ActiveRequestTrace } from './trace/request-trace'
import type { MlflowSpan } from './trace/span'
import type { MlflowTracer } from './trace/tracer'

export const kState = Symbol('fastify-mlflow-tracing.state')
const ROOT_SPAN = Object.freeze({ kind: SpanKind.SERVER })
const kPlan = Symbol('fastify-mlflow-tracing.plan')

/** What a route's traces look like, worked out on its first request and kept on its config. */
interface RoutePlan {
  traced: boolean
  url: string | undefined
  spanType: SpanType
  capture: boolean
}

type RouteConfig = { mlflow?: RouteTracingConfig | false, url?: string, [kPlan]?: RoutePlan }
type TracedFastifyRequest = FastifyRequest & { [kState]: RequestState | null }
type RawRequest = FastifyRequest['raw'] & { [kState]: RequestState }
type RawResponse = FastifyReply['raw'] & { [kState]: RequestState }

/** Counted request-time problems: tracing swallows them rather than fail the request. */
export interface LifecycleCounters {
  invalidSessions: number
  hookErrors: number
}

interface RequestState extends ActiveRequestTrace {
  readonly request: FastifyRequest
  readonly reply: FastifyReply
  readonly plan: RoutePlan
  error: Error | undefined
  output: Captured | undefined
  /** A streamed body's text, gathered as it is sent; it becomes `output` when the trace ends. */
  streamed: StreamText | undefined
  ended: boolean
}

/**
 * One trace per request, read top to bottom:
 * onRequest opens the root span (who is asking is not known yet) → onError / onSend note the error
 * and the response body → the trace ends when the connection is done with the response ('close' of
 * the raw request or response: after a streamed body too, and for a client that left) or on onTimeout.
 * The user, the per-request metadata and tags and the request body are read as the trace ends, once
 * auth and the handler are done; the user sooner if route code asks for it.
 *
 * @param sharedMetadata metadata of every trace (deployment, fixed `metadata`), shared rather than copied
 * @param logsTraceId false for Fastify's null logger: no log line could carry the id
 */
export function createLifecycle (settings: Settings, tracer: MlflowTracer, sharedMetadata: Record<string, string>, logger: Logger, logsTraceId: boolean) {
  const counters: LifecycleCounters = { invalidSessions: 0, hookErrors: 0 }
  const warnings = new ThrottledWarnings(logger)

  class TracedRequest extends ActiveRequestTrace implements RequestState {
    error: Error | undefined = undefined
    output: Captured | undefined = undefined
    streamed: StreamText | undefined = undefined
    ended = false
    private userResolved = false

    constructor (root: MlflowSpan, parent: Context, readonly request: FastifyRequest, readonly reply: FastifyReply, readonly plan: RoutePlan) {
      super(root, tracer, parent)
    }

    override resolveUser (): void {
      if (this.userResolved) return
      this.userResolved = true
      const record = this.root.trace
      if (record.metadata[TraceMetadata.USER] !== undefined) return
      guard(() => {
        const found = resolveUser(this.request, settings.user)
        if (found === undefined) return
        record.metadata[TraceMetadata.USER] = found.user
        record.metadata.user_source = found.source
        this.root.setAttribute('user.id', found.user)
      })
    }
  }

  function onRequest (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    let state: RequestState | null = null
    try {
      state = startTrace(request, reply)
    } catch (err) {
      hookFailed(err)
    }
    if (state === null) {
      request.mlflow = NOOP_REQUEST_TRACE
      return done()
    }
    ;(request as TracedFastifyRequest)[kState] = state
    request.mlflow = state
    // Fastify's onResponse misses a client that leaves a streamed response midway, and its
    // onRequestAbort costs a closure per request: the raw objects' 'close' events tell both.
    ;(reply.raw as RawResponse)[kState] = state
    ;(request.raw as RawRequest)[kState] = state
    reply.raw.on('close', onResponseClose)
    request.raw.on('close', onRequestClose)
    if (settings.activeRootSpan) context.with(state.context, done)
    else done()
  }

  function startTrace (request: FastifyRequest, reply: FastifyReply): RequestState | null {
    const plan = planOf(request)
    if (!plan.traced) return null
    if (settings.sampleRate < 1 && Math.random() >= settings.sampleRate) return null
    if (settings.ignore !== undefined && settings.ignore(request)) return null
    const parent = parentFromTraceparent(request.headers.traceparent)
    const root = tracer.startSpan(request.method + ' ' + (plan.url ?? '(no route)'), ROOT_SPAN, parent)
    root.setSpanType(plan.spanType)
    root.setAttribute('http.request.method', request.method)
    if (plan.url !== undefined) root.setAttribute('http.route', plan.url)
    const record = root.trace
    record.sharedMetadata = sharedMetadata
    record.clientRequestId = clientRequestId(request, settings.requestIdHeader)
    const sessionHeader = request.headers[settings.sessionHeader]
    if (sessionHeader !== undefined) setSession(root, sessionHeader)
    if (typeof settings.tags === 'object') Object.assign(record.tags, settings.tags)
    if (settings.traceIdHeader !== false) reply.header(settings.traceIdHeader, record.id)
    if (logsTraceId) bindLog(request, reply, record.id)
    return new TracedRequest(root, parent, request, reply, plan)
  }

  function planOf (request: FastifyRequest): RoutePlan {
    const config = request.routeOptions.config as RouteConfig
    return (config[kPlan] ??= {
      traced: config.mlflow !== false,
      url: config.url,
      spanType: (config.mlflow || undefined)?.spanType ?? settings.spanType,
      capture: (config.mlflow || undefined)?.captureBody ?? settings.captureBody
    })
  }

  function setSession (root: MlflowSpan, header: string | string[]): void {
    const { session } = sessionFrom(header)
    if (session !== undefined) {
      root.trace.metadata[TraceMetadata.SESSION] = session
      root.setAttribute('session.id', session)
      return
    }
    counters.invalidSessions++
    warnings.warn('session', () => ({ header: settings.sessionHeader, invalidSessions: counters.invalidSessions }),
      `ignored an invalid ${settings.sessionHeader} header (want 1-128 of [A-Za-z0-9_.:@+=/-])`)
  }

  // Only with activeRootSpan: hooks that call done() from another async context (older Fastify 5
  // body parsing among them) lose the request's context; the handler gets it back.
  function preHandler (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const state = stateOf(request)
    if (state === null || trace.getSpan(context.active()) === state.root) return done()
    context.with(state.context, done)
  }

  function onError (request: FastifyRequest, _reply: FastifyReply, error: Error, done: () => void): void {
    const state = stateOf(request)
    if (state !== null) state.error = error
    done()
  }

  function onSend (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void): void {
    const state = stateOf(request)
    if (state !== null) {
      // Fastify's own 404 body repeats the URL, query string (and any token in it) included.
      const capture = state.plan.capture && state.plan.url !== undefined
      if (isStream(payload)) {
        // A stream that fails after the headers went out ends as a dropped connection: keep its
        // error, or the trace would blame the client.
        payload.once('error', (err: Error) => { state.error ??= err })
        if (capture) guard(() => { tapStream(state, payload, reply) })
      } else if (capture) {
        guard(() => { state.output = capturePayload(payload, reply.getHeader('content-type'), settings.redactor, settings.maxBodyChars) })
      }
    }
    done(null, payload)
  }

  /**
   * Gathers a text stream's body as it goes to the client. Listening for 'data' here would set the
   * stream flowing before Fastify pipes it (after the other onSend hooks, maybe asynchronous ones),
   * and the client would miss those chunks: the tap goes on when the stream is piped to the response,
   * after the client's own listener. A stream that a later hook replaced (compression) is not tapped.
   */
  function tapStream (state: RequestState, stream: NodeJS.EventEmitter, reply: FastifyReply): void {
    const encoding = reply.getHeader('content-encoding')
    if (encoding !== undefined && encoding !== 'identity') return
    const kind = streamKind(reply.getHeader('content-type'))
    if (kind === undefined) return
    const text = state.streamed = new StreamText(kind, settings.redactor, settings.maxBodyChars)
    reply.raw.once('pipe', (source: NodeJS.EventEmitter) => {
      if (source !== stream) return
      source.on('data', (chunk: unknown) => {
        try {
          text.push(chunk)
        } catch (err) {
          hookFailed(err)
        }
      })
    })
  }

  function onTimeout (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const state = stateOf(request)
    if (state !== null) finish(state, undefined, 'socket timed out')
    done()
  }

  // Shared listeners instead of closures per request. The raw response's 'close' always comes,
  // except for a pipelined request still waiting its turn when the client leaves: only its raw
  // request says so. A request's 'close' also comes, unaborted, once its body has been read.
  function onResponseClose (this: RawResponse): void {
    const state = this[kState]
    if (state.ended) return
    if (this.writableEnded) finish(state, this.statusCode, undefined)
    else finish(state, undefined, 'client aborted the request')
  }

  function onRequestClose (this: RawRequest): void {
    const state = this[kState]
    if (!state.ended && this.aborted && !state.reply.raw.writableEnded) finish(state, undefined, 'client aborted the request')
  }

  // Each step is guarded alone: a throwing user callback costs its own data, not the rest. Values
  // that route code set itself win over the per-request functions.
  function enrich (state: RequestState): void {
    const { request } = state
    const record = state.root.trace
    const { metadata, tags } = settings
    state.resolveUser()
    if (typeof metadata === 'function') guard(() => { defaults(record.metadata, metadata(request)) })
    if (typeof tags === 'function') guard(() => { defaults(record.tags, tags(request)) })
    if (state.plan.capture) {
      guard(() => {
        const input = captureBody(request.body, settings.redactor, settings.maxBodyChars)
        if (input === undefined) return
        state.root.setInputs(input.value)
        record.requestPreview = input.preview
      })
    }
  }

  function finish (state: RequestState, statusCode: number | undefined, abortReason: string | undefined): void {
    state.ended = true
    const root = state.root
    try {
      enrich(state)
      if (state.streamed !== undefined) guard(() => { state.output ??= state.streamed?.captured() })
      if (state.output !== undefined && root.attributes[SpanAttribute.OUTPUTS] === undefined) {
        root.setOutputs(state.output.value)
        root.trace.responsePreview ??= state.output.preview
      }
      if (statusCode !== undefined) root.setAttribute('http.response.status_code', statusCode)
      if (abortReason !== undefined || (statusCode !== undefined && statusCode >= 500)) {
        if (state.error !== undefined) root.recordException(state.error)
        root.setStatus({ code: SpanStatusCode.ERROR, message: state.error?.message ?? abortReason ?? `HTTP ${statusCode}` })
      }
    } catch (err) {
      hookFailed(err)
    } finally {
      root.end()
    }
  }

  function bindLog (request: FastifyRequest, reply: FastifyReply, traceId: string): void {
    const bindings = { [settings.logKey]: traceId }
    const log = request.log as typeof request.log & { setBindings?: (b: object) => void }
    // setBindings changes the child logger that reply.log shares, so Fastify's own
    // "request completed" line carries the trace id too.
    if (typeof log.setBindings === 'function') log.setBindings(bindings)
    else request.log = reply.log = log.child(bindings)
  }

  function guard (fn: () => void): void {
    try {
      fn()
    } catch (err) {
      hookFailed(err)
    }
  }

  function hookFailed (err: unknown): void {
    counters.hookErrors++
    warnings.warn('hook', () => ({ err: (err as Error).message, hookErrors: counters.hookErrors }), 'MLflow tracing: a request hook failed; the request went on')
  }

  return { counters, onRequest, preHandler, onError, onSend, onTimeout }
}

function stateOf (request: FastifyRequest): RequestState | null {
  return (request as TracedFastifyRequest)[kState]
}

function defaults (target: Record<string, string>, values: Record<string, string>): void {
  for (const key in values) target[key] ??= values[key]
}

function isStream (payload: unknown): payload is NodeJS.EventEmitter {
  return typeof (payload as { pipe?: unknown } | null)?.pipe === 'function'
}
