import { SpanKind } from '@opentelemetry/api'
import { clientRequestId } from '../context/request-id'
import { sessionFrom } from '../context/session'
import { parentFromTraceparent } from '../context/traceparent'
import { TraceMetadata } from '../trace/constants'
import type { MlflowSpan } from '../trace/span'
import type { CoreRequest, CoreResponse } from './request'
import { TracedRequest, type RoutePlan } from './request-state'
import type { TraceCore } from './trace-core'

const ROOT_SPAN = Object.freeze({ kind: SpanKind.SERVER })

/**
 * Opens a request's trace as it arrives: the root span, the caller's traceparent, the request id,
 * the session and the trace-id response header. Who is asking is not known yet (auth runs later).
 * Null when the request is not traced (route opted out, sampled out, ignored).
 */
export function openTrace<R extends CoreRequest> (core: TraceCore<R>, request: R, response: CoreResponse, plan: RoutePlan,
  setHeader: (name: string, value: string) => void): TracedRequest<R> | null {
  const { settings, tracer, framework } = core
  if (!plan.traced) return null
  if (settings.sampleRate < 1 && Math.random() >= settings.sampleRate) return null
  if (settings.ignore !== undefined && settings.ignore(request)) return null
  const parent = parentFromTraceparent(request.headers.traceparent)
  const root = tracer.startSpan(request.method + ' ' + (plan.url ?? '(no route)'), ROOT_SPAN, parent)
  root.setSpanType(plan.spanType)
  root.setAttribute('http.request.method', request.method)
  if (plan.url !== undefined) root.setAttribute('http.route', plan.url)
  const record = root.trace
  record.sharedMetadata = core.sharedMetadata
  record.clientRequestId = clientRequestId(request.headers, settings.requestIdHeader, () => framework.requestId(request))
  const sessionHeader = request.headers[settings.sessionHeader]
  if (sessionHeader !== undefined) setSession(core, root, sessionHeader)
  if (typeof settings.tags === 'object') Object.assign(record.tags, settings.tags)
  if (settings.traceIdHeader !== false) setHeader(settings.traceIdHeader, record.id)
  return new TracedRequest(core, root, parent, request, response, plan)
}

function setSession<R extends CoreRequest> (core: TraceCore<R>, root: MlflowSpan, header: string | string[]): void {
  const { session } = sessionFrom(header)
  if (session === undefined) {
    core.problems.invalidSession(core.settings.sessionHeader)
    return
  }
  root.trace.metadata[TraceMetadata.SESSION] = session
  root.setAttribute('session.id', session)
}
