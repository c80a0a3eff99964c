import { INVALID_SPAN_CONTEXT, ROOT_CONTEXT, type SpanContext } from '@opentelemetry/api'
import type { RequestTrace } from './request-trace'
import type { MlflowSpan } from './span'

/** Accepts every span call and records nothing; `spanContext()` is OTel's invalid context. */
class NoopSpan {
  readonly attributes = {}
  spanContext (): SpanContext { return INVALID_SPAN_CONTEXT }
  isRecording (): boolean { return false }
  end (): void {}
  recordException (): void {}
}
for (const method of ['setAttribute', 'setAttributes', 'addEvent', 'addLink', 'addLinks', 'setStatus', 'updateName',
  'setSpanType', 'setInputs', 'setOutputs', 'setTokenUsage', 'setLlmResponse']) {
  Object.defineProperty(NoopSpan.prototype, method, { value: function (this: NoopSpan) { return this } })
}
const NOOP_SPAN = new NoopSpan() as unknown as MlflowSpan

/** `request.mlflow` of a request that is not traced: the same API, so route code needs no checks. */
export const NOOP_REQUEST_TRACE: RequestTrace = Object.freeze({
  traced: false,
  traceId: undefined,
  context: ROOT_CONTEXT,
  user: undefined,
  session: undefined,
  span: <T>(_name: string, _options: unknown, fn: (span: MlflowSpan) => T): T => fn(NOOP_SPAN),
  llm: <T>(_request: unknown, fn: (span: MlflowSpan) => T): T => fn(NOOP_SPAN),
  tool: <T>(_name: string, _inputs: unknown, fn: (span: MlflowSpan) => T): T => fn(NOOP_SPAN),
  setTags: () => {},
  setMetadata: () => {},
  // A new object each time: callers spread it into their own headers, or add to it.
  propagationHeaders: () => ({})
})
