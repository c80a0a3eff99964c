import { context, SpanKind, SpanStatusCode, trace, type Context } from '@opentelemetry/api'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { captureBody, capturePayload, type Captured } from './context/capture'
import { clientRequestId } from './context/request-id'
import { sessionFrom } from './context/session'
import { parentFromTraceparent } from './context/traceparent'
import { resolveUser } from './context/user'
import { ThrottledWarnings, type Logger } from './export/logger'
import type { RouteTracingConfig, Settings } from './options'
import { SpanAttribute, TraceMetadata } from './trace/constants'
import { NOOP_REQUEST_TRACE } from './trace/noop-request-trace'
import { ActiveRequestTrace } from './trace/request-trace'
import type { MlflowSpan } from './trace/span'
import type { MlflowTracer } from './trace/tracer'

export const kState = Symbol('fastify-mlflow-tracing.state')
const kRequest = Symbol('fastify-mlflow-tracing.request')
type RawWithRequest = FastifyReply['raw'] & { [kRequest]: FastifyRequest }

interface RequestState {
  root: MlflowSpan
  ctx: Context
  route: RouteTracingConfig | undefined
  enriched: boolean
  error: Error | undefined
  output: Captured | undefined
  ended: boolean
}

type TracedRequest = FastifyRequest & { [kState]: RequestState | null }

/** Counted request-time problems: tracing swallows them rather than fail the request. */
export interface LifecycleCounters {
  invalidSessions: number
  hookErrors: number
}

/**
 * One trace per request, read top to bottom:
 * onRequest opens the root span (who is asking is not known yet) → preValidation re-enters its
 * context after body parsing → preHandler adds the user, per-request metadata and the request body,
 * before the handler runs → onError / onSend note the error and the response body → the trace ends
 * when the response has really finished (onResponse, after a streamed body too), or on
 * onRequestAbort / onTimeout / a connection lost midway, with state ERROR.
 */
export function createLifecycle (settings: Settings, tracer: MlflowTracer, deployment: Record<string, string>, logger: Logger) {
  const counters: LifecycleCounters = { invalidSessions: 0, hookErrors: 0 }
  const warnings = new ThrottledWarnings(logger)

  function onRequest (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const req = request as TracedRequest
    req[kState] = null
    request.mlflow = NOOP_REQUEST_TRACE
    let state: RequestState | null = null
    try {
      state = startTrace(request, reply)
    } catch (err) {
      hookFailed(err)
    }
    if (state === null) return done()
    req[kState] = state
    // Fastify runs no hook when a streamed response loses its connection midway: the raw
    // response's 'close' is the one signal that always comes.
    ;(reply.raw as RawWithRequest)[kRequest] = request
    reply.raw.on('close', onRawClose)
    context.with(state.ctx, done)
  }

  function startTrace (request: FastifyRequest, reply: FastifyReply): RequestState | null {
    const route = request.routeOptions.config.mlflow
    if (route === false) return null
    if (settings.sampleRate < 1 && Math.random() >= settings.sampleRate) return null
    if (settings.ignore !== undefined && settings.ignore(request)) return null
    const parent = parentFromTraceparent(request.headers.traceparent)
    const root = tracer.startSpan(`${request.method} ${request.routeOptions.url ?? '(no route)'}`, { kind: SpanKind.SERVER }, parent)
    root.setSpanType(route?.spanType ?? settings.spanType)
    root.setAttribute('http.request.method', request.method)
    if (request.routeOptions.url !== undefined) root.setAttribute('http.route', request.routeOptions.url)
    const record = root.trace
    record.sharedMetadata = deployment
    record.clientRequestId = clientRequestId(request, settings.requestIdHeader)
    const { session, invalid } = sessionFrom(request.headers[settings.sessionHeader])
    if (session !== undefined) {
      record.metadata[TraceMetadata.SESSION] = session
      root.setAttribute('session.id', session)
    } else if (invalid) {
      counters.invalidSessions++
      warnings.warn('session', () => ({ header: settings.sessionHeader, invalidSessions: counters.invalidSessions }),
        `ignored an invalid ${settings.sessionHeader} header (want 1-128 of [A-Za-z0-9_.:@+=/-])`)
    }
    if (typeof settings.metadata === 'object') Object.assign(record.metadata, settings.metadata)
    if (typeof settings.tags === 'object') Object.assign(record.tags, settings.tags)

    const ctx = trace.setSpan(parent, root)
    request.mlflow = new ActiveRequestTrace(root, tracer, ctx)
    if (settings.traceIdHeader !== false) reply.header(settings.traceIdHeader, record.id)
    bindLog(request, reply, record.id)
    return { root, ctx, route: route ?? undefined, enriched: false, error: undefined, output: undefined, ended: false }
  }

  // Fastify runs preValidation, preHandler and the handler from the body parser's 'end' event, which
  // older Fastify 5 releases ran in another async context: re-enter the request's context if lost.
  function preValidation (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const state = (request as TracedRequest)[kState]
    if (state === null || trace.getSpan(context.active()) === state.root) return done()
    context.with(state.ctx, done)
  }

  function preHandler (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const state = (request as TracedRequest)[kState]
    if (state !== null) enrich(request, state)
    done()
  }

  function onError (request: FastifyRequest, _reply: FastifyReply, error: Error, done: () => void): void {
    const state = (request as TracedRequest)[kState]
    if (state !== null) state.error = error
    done()
  }

  function onSend (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void): void {
    const state = (request as TracedRequest)[kState]
    if (state !== null) {
      // A stream that fails after the headers went out ends as a dropped connection: keep its error,
      // or the trace would blame the client.
      if (isStream(payload)) payload.once('error', (err: Error) => { state.error ??= err })
      // Fastify's own 404 body repeats the URL, query string (and any token in it) included.
      else if (captures(state) && request.routeOptions.url !== undefined) {
        guard(() => { state.output = capturePayload(payload, reply.getHeader('content-type'), settings.redactor, settings.maxBodyChars) })
      }
    }
    done(null, payload)
  }

  function onResponse (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    finish(request, reply.statusCode, undefined)
    done()
  }

  function onRequestAbort (request: FastifyRequest, done: HookHandlerDoneFunction): void {
    finish(request, undefined, 'client aborted the request')
    done()
  }

  function onTimeout (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    finish(request, undefined, 'socket timed out')
    done()
  }

  // One shared listener instead of a closure per request.
  function onRawClose (this: RawWithRequest): void {
    if (!this.writableFinished) finish(this[kRequest], undefined, 'client aborted the request')
  }

  // Each step is guarded alone: a throwing user callback costs its own data, not the rest.
  function enrich (request: FastifyRequest, state: RequestState): void {
    state.enriched = true
    const record = state.root.trace
    const { metadata, tags } = settings
    if (record.metadata[TraceMetadata.USER] === undefined) {
      guard(() => {
        const found = resolveUser(request, settings.user)
        if (found === undefined) return
        record.metadata[TraceMetadata.USER] = found.user
        record.metadata.user_source = found.source
        state.root.setAttribute('user.id', found.user)
      })
    }
    if (typeof metadata === 'function') guard(() => { Object.assign(record.metadata, metadata(request)) })
    if (typeof tags === 'function') guard(() => { Object.assign(record.tags, tags(request)) })
    if (captures(state)) {
      guard(() => {
        const input = captureBody(request.body, settings.redactor, settings.maxBodyChars)
        if (input === undefined) return
        state.root.setInputs(input.value)
        record.requestPreview = input.preview
      })
    }
  }

  function finish (request: FastifyRequest, statusCode: number | undefined, abortReason: string | undefined): void {
    const state = (request as TracedRequest)[kState]
    if (state === null || state.ended) return
    state.ended = true
    const root = state.root
    try {
      // Requests that never reached preHandler (404, failed validation) still get their user and body.
      if (!state.enriched) enrich(request, state)
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

  function isStream (payload: unknown): payload is NodeJS.EventEmitter {
    return typeof (payload as { pipe?: unknown } | null)?.pipe === 'function'
  }

  function captures (state: RequestState): boolean {
    return state.route?.captureBody ?? settings.captureBody
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

  return { counters, onRequest, preValidation, preHandler, onError, onSend, onResponse, onRequestAbort, onTimeout }
}
