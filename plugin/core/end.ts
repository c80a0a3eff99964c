import { SpanStatusCode } from '@opentelemetry/api'
import { captureBody } from '../context/capture'
import { SpanAttribute } from '../trace/constants'
import type { CoreRequest } from './request'
import type { TracedRequest } from './request-state'

/**
 * Ends a request's trace once the connection is done with the response (or gave up on it): what is
 * known only now (the user after auth, the route, per-request metadata and tags, the request body),
 * the response body, the status, and ERROR for a 5xx or an aborted request.
 */
export function endTrace<R extends CoreRequest> (state: TracedRequest<R>, statusCode: number | undefined, abortReason: string | undefined): void {
  state.ended = true
  const root = state.root
  const { problems } = state.core
  try {
    const route = resolveContext(state)
    if (state.streamed !== undefined) problems.guard(() => { state.output ??= state.streamed?.captured() })
    // The framework's own 404 body repeats the URL, query string (and any token in it) included.
    if (state.output !== undefined && state.capture && route !== undefined && root.attributes[SpanAttribute.OUTPUTS] === undefined) {
      root.setOutputs(state.output.value)
      root.trace.responsePreview ??= state.output.preview
    }
    if (statusCode !== undefined) root.setAttribute('http.response.status_code', statusCode)
    if (abortReason !== undefined || (statusCode !== undefined && statusCode >= 500)) {
      if (state.error !== undefined) root.recordException(state.error)
      root.setStatus({ code: SpanStatusCode.ERROR, message: state.error?.message ?? abortReason ?? `HTTP ${statusCode}` })
    }
  } catch (err) {
    problems.failed(err)
  } finally {
    root.end()
  }
}

/**
 * What the trace learns at its end, each step guarded alone. Values that route code set itself win
 * over the per-request functions. Returns the route pattern, if any route took the request.
 */
function resolveContext<R extends CoreRequest> (state: TracedRequest<R>): string | undefined {
  const { request, root } = state
  const { settings, problems, framework } = state.core
  const record = root.trace
  const { metadata, tags } = settings
  state.resolveUser()
  let route = state.plan.url
  if (framework.routeAtEnd !== undefined) {
    problems.guard(() => {
      route = framework.routeAtEnd?.(request) ?? route
      if (route === state.plan.url || route === undefined) return
      root.updateName(request.method + ' ' + route)
      root.setAttribute('http.route', route)
    })
  }
  if (typeof metadata === 'function') problems.guard(() => { defaults(record.metadata, metadata(request)) })
  if (typeof tags === 'function') problems.guard(() => { defaults(record.tags, tags(request)) })
  if (state.capture) {
    problems.guard(() => {
      const input = captureBody(framework.body === undefined ? request.body : framework.body(request), settings.redactor, settings.maxBodyChars)
      if (input === undefined) return
      root.setInputs(input.value)
      record.requestPreview = input.preview
    })
  }
  return route
}

function defaults (target: Record<string, string>, values: Record<string, string>): void {
  for (const key in values) target[key] ??= values[key]
}
