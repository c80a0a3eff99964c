import { context, trace } from '@opentelemetry/api'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { withTraceId } from '../core/log'
import { endTrace } from '../core/end'
import { beginTrace, continueTrace } from '../core/begin'
import type { RouteTracingConfig } from '../core/options'
import type { RoutePlan, TracedRequest } from '../core/request-state'
import { captureResponse, streamTap } from '../core/response-body'
import type { TraceCore } from '../core/trace-core'

export const kState = Symbol('fastify-mlflow-tracing.request-state')
const kPlan = Symbol('fastify-mlflow-tracing.plan')

type RouteConfig = { mlflow?: RouteTracingConfig | false, url?: string, [kPlan]?: RoutePlan }
type State = TracedRequest<FastifyRequest>
type TracedFastifyRequest = FastifyRequest & { [kState]: State | null }

/**
 * Fastify's lifecycle mapped onto the core, read top to bottom: onRequest opens the trace →
 * onError / onSend note the error and the response body → the core ends it when the connection is
 * done with the response, or onTimeout does.
 *
 * @param logsTraceId false for Fastify's null logger: no log line could carry the id
 */
export function fastifyHooks (core: TraceCore<FastifyRequest>, logsTraceId: boolean) {
  const { settings, problems } = core

  // Ended on the raw objects' 'close' (beginTrace): Fastify's onResponse misses a client that leaves
  // a streamed response midway, and its onRequestAbort costs a closure per request.
  function onRequest (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const state = beginTrace(core, request, { request: request.raw, response: reply.raw }, planOf(request), (name, value) => { reply.header(name, value) },
      opened => { if (logsTraceId) request.log = reply.log = withTraceId(request.log, settings.logKey, opened.root.trace.id) })
    ;(request as TracedFastifyRequest)[kState] = state
    continueTrace(core, state, done)
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
      const capture = state.capture && state.plan.url !== undefined
      if (isStream(payload)) {
        // A stream that fails after the headers went out ends as a dropped connection: keep its
        // error, or the trace would blame the client.
        payload.once('error', (err: Error) => { state.error ??= err })
        if (capture) problems.guard(() => { tapStream(state, payload, reply) })
      } else if (capture) {
        captureResponse(state, payload, reply.getHeader('content-type'))
      }
    }
    done(null, payload)
  }

  /**
   * Listening for 'data' here would set the stream flowing before Fastify pipes it (after the other
   * onSend hooks, maybe asynchronous ones), and the client would miss those chunks: the tap goes on
   * when the stream is piped to the response, after the client's own listener. A stream that a
   * later hook replaced (compression) is not tapped.
   */
  function tapStream (state: State, stream: NodeJS.EventEmitter, reply: FastifyReply): void {
    const push = streamTap(state, reply.getHeader('content-type'), reply.getHeader('content-encoding'))
    if (push === undefined) return
    reply.raw.once('pipe', (source: NodeJS.EventEmitter) => {
      if (source === stream) source.on('data', push)
    })
  }

  function onTimeout (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const state = stateOf(request)
    if (state !== null) endTrace(state, undefined, 'socket timed out')
    done()
  }

  return { onRequest, preHandler, onError, onSend, onTimeout }
}

function stateOf (request: FastifyRequest): State | null {
  return (request as TracedFastifyRequest)[kState]
}

function isStream (payload: unknown): payload is NodeJS.EventEmitter {
  return typeof (payload as { pipe?: unknown } | null)?.pipe === 'function'
}
