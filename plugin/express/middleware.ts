import { randomUUID } from 'node:crypto'
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'
import { withTraceId, type BindableLogger } from '../core/log'
import { beginTrace, continueTrace } from '../core/begin'
import { validateRouteConfig, type RouteTracingConfig } from '../core/options'
import type { RoutePlan } from '../core/request-state'
import type { TraceCore } from '../core/trace-core'
import { setState, stateOf } from './request-state'
import { tapResponses } from './response-tap'

type TracedExpressRequest = Request & { log?: BindableLogger }
type LoggedResponse = Response & { log?: BindableLogger }

/** What Express knows of a request that the core asks for. */
export const expressRequests = {
  /** pino-http's request id when it runs first; Express has none of its own. */
  requestId: (req: Request): string => {
    const id = (req as { id?: unknown }).id
    return typeof id === 'string' || typeof id === 'number' ? String(id) : randomUUID()
  },
  /** Express routes after middleware: the pattern is known once a route took the request. */
  routeAtEnd: (req: Request): string | undefined => {
    const path = (req.route as { path?: unknown } | undefined)?.path
    return typeof path === 'string' ? req.baseUrl + path : undefined
  },
  /** Express 4's body parsers set `{}` on every request, one that carries no body too (a GET). */
  body: (req: Request): unknown => req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined ? req.body : undefined
}

/**
 * Express's lifecycle mapped onto the core: the middleware opens the trace (the route is not known
 * yet, so every request has the app's plan and the root is renamed at the end), the response tap
 * notes the body, the error middleware the exception, and the core ends the trace when the
 * connection is done with the response.
 */
export function expressMiddleware (core: TraceCore<Request>): { middleware: RequestHandler, errorHandler: ErrorRequestHandler, route: (config: RouteTracingConfig) => RequestHandler } {
  const { settings } = core
  const plan: RoutePlan = { traced: true, url: undefined, spanType: settings.spanType, capture: settings.captureBody }

  function middleware (req: Request, res: Response, next: NextFunction): void {
    const state = beginTrace(core, req, { request: req, response: res }, plan, (name, value) => { res.setHeader(name, value) },
      opened => { correlateLog(req as TracedExpressRequest, res, opened.root.trace.id) })
    if (state !== null) {
      setState(req, state)
      // Tapped even when bodies are off: a route may turn capture on (tracing.route).
      tapResponses(res)
    }
    continueTrace(core, state, next)
  }

  // pino-http's request and response share one child logger; a logger set up after this
  // middleware cannot carry the id.
  function correlateLog (req: TracedExpressRequest, res: LoggedResponse, traceId: string): void {
    if (req.log === undefined) return
    const log = withTraceId(req.log, settings.logKey, traceId)
    if (res.log === req.log) res.log = log
    req.log = log
  }

  // Express has no route options: a middleware in front of the route's handler does their work.
  function route (config: RouteTracingConfig): RequestHandler {
    validateRouteConfig(config)
    return (req, _res, next) => {
      const state = stateOf(req)
      if (state !== undefined) {
        if (config.spanType !== undefined) state.root.setSpanType(config.spanType)
        if (config.captureBody !== undefined) state.capture = config.captureBody
      }
      next()
    }
  }

  const errorHandler: ErrorRequestHandler = (err, req, _res, next) => {
    const state = stateOf(req)
    if (state !== undefined) state.error = err instanceof Error ? err : new Error(String(err))
    next(err)
  }

  return { middleware, errorHandler, route }
}
