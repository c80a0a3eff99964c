import {
  SpanStatusCode, TraceFlags,
  type Attributes, type AttributeValue, type Exception, type Link, type Span, type SpanContext,
  type SpanKind, type SpanStatus, type TimeInput
} from '@opentelemetry/api'
import { SpanAttribute, type SpanType } from './constants'
import { llmResponseAttributes, totalTokens, type LlmResponse } from './genai'
import { RawJson, safeJson } from './json'
import { newSpanIdHex } from './ids'
import { nowNs, toNs } from './time'
import type { TraceRecord } from './trace-record'

export interface SpanEvent {
  name: string
  timeNs: bigint
  attributes?: Attributes
}

// Shared by every span that has no status of its own: one object less per span.
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET })
const OK: SpanStatus = Object.freeze({ code: SpanStatusCode.OK })

/** Token counts in MLflow's `mlflow.chat.tokenUsage` shape. */
export interface TokenUsage {
  input_tokens: number
  output_tokens: number
  total_tokens?: number
  cache_read_input_tokens?: number
  cache_creation_input_tokens?: number
}

/**
 * A span on the OTel API that keeps only what MLflow stores. Object attribute values are
 * JSON-encoded when set; strings, numbers and booleans when the trace is serialized.
 */
export class MlflowSpan implements Span {
  readonly spanId = newSpanIdHex()
  readonly attributes: Record<string, unknown> = {}
  readonly events: SpanEvent[] = []
  status: SpanStatus = UNSET
  endNs = 0n
  ended = false
  private context: SpanContext | undefined

  constructor (
    readonly trace: TraceRecord,
    public name: string,
    readonly parentSpanId: string,
    readonly startNs: bigint,
    readonly kind: SpanKind
  ) {
    // A span started after its trace ended is counted by the tracer, never exported.
    if (!trace.finalized) trace.spans.push(this)
  }

  spanContext (): SpanContext {
    return (this.context ??= { traceId: this.trace.otelTraceId, spanId: this.spanId, traceFlags: TraceFlags.SAMPLED })
  }

  setAttribute (key: string, value: AttributeValue | unknown): this {
    if (this.ended || value === undefined || value === null) return this
    // Objects are encoded now, as MLflow's SDKs do: a messages array that the agent goes on
    // appending to must show what this span saw, not what it held when the trace was exported.
    this.attributes[key] = typeof value === 'object' && !(value instanceof RawJson) ? new RawJson(safeJson(value)) : value
    return this
  }

  setAttributes (attributes: Attributes | Record<string, unknown>): this {
    for (const key in attributes) this.setAttribute(key, attributes[key])
    return this
  }

  setSpanType (type: SpanType): this {
    return this.setAttribute(SpanAttribute.TYPE, type)
  }

  setInputs (inputs: unknown): this {
    return this.setAttribute(SpanAttribute.INPUTS, inputs)
  }

  setOutputs (outputs: unknown): this {
    return this.setAttribute(SpanAttribute.OUTPUTS, outputs)
  }

  setTokenUsage (usage: TokenUsage): this {
    return this.setAttribute(SpanAttribute.TOKEN_USAGE, { ...usage, total_tokens: totalTokens(usage) })
  }

  /** An LLM call's result: response model and id, finish reasons, token usage, outputs. */
  setLlmResponse (response: LlmResponse): this {
    return this.setAttributes(llmResponseAttributes(response))
  }

  addEvent (name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this
    if (isTimeInput(attributesOrTime)) this.events.push({ name, timeNs: toNs(attributesOrTime) })
    else this.events.push({ name, timeNs: toNs(time), attributes: attributesOrTime })
    return this
  }

  // MLflow's span document has no links.
  addLink (_link: Link): this { return this }
  addLinks (_links: Link[]): this { return this }

  setStatus (status: SpanStatus): this {
    if (!this.ended) this.status = status
    return this
  }

  updateName (name: string): this {
    if (!this.ended) this.name = name
    return this
  }

  isRecording (): boolean {
    return !this.ended
  }

  recordException (exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {}
    if (typeof exception === 'string') {
      attributes['exception.message'] = exception
    } else {
      attributes['exception.type'] = exception.name ?? String(exception.code ?? 'Error')
      if (exception.message !== undefined) attributes['exception.message'] = exception.message
      if (exception.stack !== undefined) attributes['exception.stacktrace'] = exception.stack
    }
    this.addEvent('exception', attributes, time)
  }

  end (endTime?: TimeInput): void {
    if (this.ended) return
    this.close(toNs(endTime))
    this.trace.spanEnded(this)
  }

  /** Ends without notifying the trace: used when the root ends before its children. */
  close (endNs: bigint = nowNs()): void {
    this.ended = true
    this.endNs = endNs < this.startNs ? this.startNs : endNs
    // As MLflow's SDKs do: a span that ended without an error is OK.
    if (this.status.code === SpanStatusCode.UNSET) this.status = OK
  }
}

function isTimeInput (value: unknown): value is TimeInput {
  return typeof value === 'number' || Array.isArray(value) || value instanceof Date
}
