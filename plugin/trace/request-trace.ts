import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Context } from '@opentelemetry/api'
import { traceparentOf } from '../context/traceparent'
import { FST_MLFLOW_INVALID_OPTION } from '../errors'
import { SpanType, TraceMetadata } from './constants'
import { chatCompletion, llmRequestAttributes, type LlmRequest } from './genai'
import type { MlflowSpan } from './span'
import type { MlflowTracer } from './tracer'

export interface ChildSpanOptions {
  type?: SpanType
  inputs?: unknown
  attributes?: Attributes
  kind?: SpanKind
}

/** What route code gets as `request.mlflow`: the request's trace, or a no-op one when it is not traced. */
export interface RequestTrace {
  /** False when the request is not traced (disabled, ignored, sampled out, opted out per route). */
  readonly traced: boolean
  /** The MLflow trace id (`tr-…`), to attach feedback or to find the trace. */
  readonly traceId: string | undefined
  /**
   * The OTel context whose active span is the request's root: `context.with(request.mlflow.context, fn)`
   * makes the root active for `fn` (it is active for the whole request with `activeRootSpan: true`).
   */
  readonly context: Context
  readonly user: string | undefined
  readonly session: string | undefined
  /**
   * Runs `fn` inside a child span that is the active OTel span, so `trace.getActiveSpan()` and other
   * instrumentations nest under it. The span ends when `fn` returns or its promise settles; a throw
   * marks it ERROR and is rethrown. Its return value, if plain data, becomes the outputs unless outputs were set.
   */
  span: <T>(name: string, options: ChildSpanOptions, fn: (span: MlflowSpan) => T) => T
  /**
   * An LLM call: `gen_ai.*` request attributes now, `span.setLlmResponse(...)` for the result. A
   * plain-data return value becomes the outputs as `setLlmResponse` records them (a chat completion).
   */
  llm: <T>(request: LlmRequest, fn: (span: MlflowSpan) => T) => T
  /** A tool call (span type TOOL). */
  tool: <T>(name: string, inputs: unknown, fn: (span: MlflowSpan) => T) => T
  /** Mutable labels for routing and triage. */
  setTags: (tags: Record<string, string>) => void
  /** Immutable facts about the request; throws FST_MLFLOW_TRACE_FINALIZED once the trace has ended. */
  setMetadata: (metadata: Record<string, string>) => void
  /**
   * Headers for a call to another service, so that its spans can join this MLflow trace (its
   * `distributedTracing: 'join'`, or MLflow's Python `set_tracing_context_from_http_request_headers`):
   * `{ traceparent }` naming this MLflow trace and the active span of this request (else the root).
   * `{}` when the request is not traced.
   */
  propagationHeaders: () => Record<string, string>
}

export class ActiveRequestTrace implements RequestTrace {
  readonly traced = true
  private rootContext: Context | undefined

  /** @param parent the context the root was started in (a remote traceparent, or none) */
  constructor (readonly root: MlflowSpan, private readonly tracer: MlflowTracer, private readonly parent: Context) {}

  // Built on first use: most requests never need it.
  get context (): Context {
    return (this.rootContext ??= trace.setSpan(this.parent, this.root))
  }

  get traceId (): string {
    return this.root.trace.id
  }

  get user (): string | undefined {
    this.resolveUser()
    return this.root.trace.metadata[TraceMetadata.USER]
  }

  get session (): string | undefined {
    return this.root.trace.metadata[TraceMetadata.SESSION]
  }

  span<T> (name: string, options: ChildSpanOptions, fn: (span: MlflowSpan) => T): T {
    return this.run(name, options, fn, undefined)
  }

  llm<T> (request: LlmRequest, fn: (span: MlflowSpan) => T): T {
    const operation = request.operation ?? 'chat'
    return this.run(request.name ?? `${operation} ${request.model}`, {
      type: SpanType.LLM, kind: SpanKind.CLIENT, attributes: llmRequestAttributes(request, this.session) as Attributes
    }, fn, llmOutputs)
  }

  tool<T> (name: string, inputs: unknown, fn: (span: MlflowSpan) => T): T {
    return this.span(name, { type: SpanType.TOOL, inputs }, fn)
  }

  /** @param outputs what a return value is recorded as, when it becomes the outputs */
  private run<T> (name: string, options: ChildSpanOptions, fn: (span: MlflowSpan) => T, outputs: OutputsOf | undefined): T {
    const parent = this.currentContext()
    const span = this.tracer.startSpan(name, { kind: options.kind, attributes: options.attributes }, parent)
    span.setSpanType(options.type ?? SpanType.UNKNOWN)
    if (options.inputs !== undefined) span.setInputs(options.inputs)
    return context.with(trace.setSpan(parent, span), runInSpan<T>, undefined, span, fn, outputs)
  }

  setTags (tags: Record<string, string>): void {
    this.root.trace.setTags(strings(tags, 'tags'))
  }

  setMetadata (metadata: Record<string, string>): void {
    this.root.trace.setMetadata(strings(metadata, 'metadata'))
  }

  propagationHeaders (): Record<string, string> {
    const span = trace.getSpan(this.currentContext()) as MlflowSpan
    // The MLflow trace's id, not the OTel one: under a caller's traceparent in 'separate' mode the
    // spans report the caller's W3C trace to OTel, but the callee must join this MLflow trace.
    return { traceparent: traceparentOf(span.trace.traceIdHex, span.spanId) }
  }

  /**
   * The active context when its span belongs to this request; otherwise (context lost on the way,
   * e.g. a callback API) the root's, never another request's trace.
   */
  private currentContext (): Context {
    const active = trace.getSpan(context.active()) as MlflowSpan | undefined
    return active?.trace === this.root.trace ? context.active() : this.context
  }

  /** Finding the user is the plugin's business (it looks when asked, or when the trace ends); not part of RequestTrace. */
  resolveUser (): void {}
}

type OutputsOf = (value: unknown) => unknown

function llmOutputs (value: unknown): unknown {
  return chatCompletion({ outputs: value })
}

function runInSpan<T> (span: MlflowSpan, fn: (span: MlflowSpan) => T, outputs: OutputsOf | undefined): T {
  let result: T
  try {
    result = fn(span)
  } catch (err) {
    fail(span, err)
    throw err
  }
  if (result instanceof Promise) {
    return result.then(value => succeed(span, value, outputs), (err: unknown) => {
      fail(span, err)
      throw err
    }) as T
  }
  return succeed(span, result, outputs)
}

function succeed<T> (span: MlflowSpan, value: T, outputs: OutputsOf | undefined): T {
  if (isPlainData(value) && span.attributes['mlflow.spanOutputs'] === undefined) span.setOutputs(outputs === undefined ? value : outputs(value))
  span.end()
  return value
}

/** Return values worth recording as outputs: not streams, sockets or class instances. */
function isPlainData (value: unknown): boolean {
  if (value === undefined || value === null || typeof value === 'function') return false
  if (typeof value !== 'object' || Array.isArray(value)) return true
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function fail (span: MlflowSpan, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err))
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) })
  span.end()
}

function strings (entries: Record<string, string>, what: string): Record<string, string> {
  for (const key in entries) {
    if (typeof entries[key] !== 'string') {
      throw new FST_MLFLOW_INVALID_OPTION(`${what}.${key}`, `trace ${what} values are strings, got ${typeof entries[key]}`)
    }
  }
  return entries
}
