import {
  context, isSpanContextValid, SpanKind, trace,
  type Context, type Span, type SpanOptions, type Tracer
} from '@opentelemetry/api'
import { TraceMetadata } from './constants'
import { newTraceIdHex } from './ids'
import { MlflowSpan } from './span'
import { toNs } from './time'
import { TraceRecord } from './trace-record'

export type TraceEndListener = (trace: TraceRecord) => void

/**
 * An OTel `Tracer` whose spans form MLflow traces. A span whose parent is one of ours joins the
 * parent's trace; any other span starts a trace of its own.
 */
export class MlflowTracer implements Tracer {
  /** Spans started under a trace that had already ended: they cannot be exported. */
  lateSpans = 0

  constructor (private readonly onTraceEnd: TraceEndListener) {}

  startSpan (name: string, options: SpanOptions = {}, ctx: Context = context.active()): MlflowSpan {
    const parent = options.root === true ? undefined : trace.getSpan(ctx)
    let record: TraceRecord
    let parentSpanId = ''
    if (parent instanceof MlflowSpan) {
      record = parent.trace
      parentSpanId = parent.spanId
      if (record.finalized) this.lateSpans++
    } else {
      // A foreign parent (a W3C traceparent, another SDK's span) is outside this MLflow trace. The
      // MLflow trace still needs an id of its own: StartTraceV3 with an id in use (the caller's
      // MLflow trace, a sibling request under the same upstream trace) overwrites that trace. Its
      // spans keep the caller's W3C trace id towards OTel, so propagation downstream continues the
      // caller's trace, and the caller's ids are kept as metadata.
      const remote = parent?.spanContext()
      const joined = remote !== undefined && isSpanContextValid(remote)
      record = new TraceRecord(newTraceIdHex(), this.onTraceEnd, joined ? remote.traceId : undefined)
      if (joined) {
        parentSpanId = remote.spanId
        record.metadata[TraceMetadata.PARENT_TRACE_ID] = remote.traceId
        record.metadata[TraceMetadata.PARENT_SPAN_ID] = remote.spanId
      }
    }
    const span = new MlflowSpan(record, name, parentSpanId, toNs(options.startTime), options.kind ?? SpanKind.INTERNAL)
    if (options.attributes !== undefined) span.setAttributes(options.attributes)
    return span
  }

  startActiveSpan<F extends (span: Span) => unknown> (name: string, fn: F): ReturnType<F>
  startActiveSpan<F extends (span: Span) => unknown> (name: string, options: SpanOptions, fn: F): ReturnType<F>
  startActiveSpan<F extends (span: Span) => unknown> (name: string, options: SpanOptions, ctx: Context, fn: F): ReturnType<F>
  startActiveSpan<F extends (span: Span) => unknown> (
    name: string, a: SpanOptions | F, b?: Context | F, c?: F
  ): ReturnType<F> {
    const fn = (c ?? (typeof b === 'function' ? b : a)) as F
    const options = typeof a === 'function' ? {} : a
    const parentCtx = typeof b === 'object' ? b : context.active()
    const span = this.startSpan(name, options, parentCtx)
    return context.with(trace.setSpan(parentCtx, span), fn as (span: Span) => ReturnType<F>, undefined, span)
  }
}
