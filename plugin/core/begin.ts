import { context } from '@opentelemetry/api'
import type { EventEmitter } from 'node:events'
import { NOOP_REQUEST_TRACE } from '../trace/noop-request-trace'
import type { RequestTrace } from '../trace/request-trace'
import { endOnClose } from './end-on-close'
import { openTrace } from './open'
import type { CoreRequest, CoreResponse } from './request'
import type { RoutePlan, TracedRequest } from './request-state'
import type { TraceCore } from './trace-core'

/**
 * A request's trace as the framework first sees the request: opened (or not: `request.mlflow` is
 * then the no-op handle), and set to end when the connection is done with the response. `opened`
 * is the adapter's own step (log correlation). Never throws: a failure costs the trace, not the request.
 */
export function beginTrace<R extends CoreRequest & { mlflow: RequestTrace }> (core: TraceCore<R>, request: R,
  raw: { request: EventEmitter & { readonly aborted: boolean }, response: EventEmitter & CoreResponse }, plan: RoutePlan,
  setHeader: (name: string, value: string) => void, opened: (state: TracedRequest<R>) => void): TracedRequest<R> | null {
  let state: TracedRequest<R> | null = null
  try {
    state = openTrace(core, request, raw.response, plan, setHeader)
    if (state !== null) opened(state)
  } catch (err) {
    core.problems.failed(err)
  }
  request.mlflow = state ?? NOOP_REQUEST_TRACE
  if (state !== null) endOnClose(state, raw.request, raw.response)
  return state
}

/** The rest of the request, inside the root's context when `activeRootSpan` asks for it. */
export function continueTrace<R extends CoreRequest> (core: TraceCore<R>, state: TracedRequest<R> | null, next: () => void): void {
  if (state !== null && core.settings.activeRootSpan) context.with(state.context, next)
  else next()
}
