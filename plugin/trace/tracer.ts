import {
  context, isSpanContextValid, SpanKind, trace,
  type Context, type Span, type SpanContext, type SpanOptions, type Tracer
} from '@opentelemetry/api'
import { TraceMetadata } from './constants'
import type { DistributedTracing } from './distributed'
import { newTraceIdHex } from './ids'
import { MlflowSpan } from './span'
import { toNs } from './time'
import { TraceRecord } from './trace-record'

export type TraceEndListener = (trace: TraceRecord) => void

/**
 * An OTel `Tracer` whose spans form MLflow traces. A span whose parent is one of ours joins the
 * parent's trace; any other span starts a trace of its own, except, in 'join' mode, a span under
 * a remote parent: that one continues the caller's MLflow trace.
 */
export class MlflowTracer implements Tracer {
  /** Spans started under a trace that had already ended: they cannot be exported. */
  lateSpans = 0

  /**
   * @param distributed what a span under a remote parent (a W3C traceparent) starts
   * @param canJoin whether the destination can take a joined trace (it needs OTLP span ingest);
   *   where it cannot, 'join' starts a separate trace rather than one that could not be stored
   */
  constructor (
    private readonly onTraceEnd: TraceEndListener,
    readonly distributed: DistributedTracing = 'separate',
    private readonly canJoin: () => boolean = () => true
  ) {}

  startSpan (name: string, options: SpanOptions = {}, ctx: Context = context.active()): MlflowSpan {
    const parent = options.root === true ? undefined : trace.getSpan(ctx)
    let record: TraceRecord
    let parentSpanId = ''
    if (parent instanceof MlflowSpan) {
      record = parent.trace
      parentSpanId = parent.spanId
      if (record.finalized) this.lateSpans++
    } else {
      const remote = parent?.spanContext()
      if (remote !== undefined && isSpanContextValid(remote)) {
        parentSpanId = remote.spanId
        record = this.traceUnder(remote)
      } else {
        record = new TraceRecord(newTraceIdHex(), this.onTraceEnd)
      }
    }
    const span = new MlflowSpan(record, name, parentSpanId, toNs(options.startTime), options.kind ?? SpanKind.INTERNAL)
    if (options.attributes !== undefined) span.setAttributes(options.attributes)
    return span
  }

  /** The trace of a span whose parent is foreign: a W3C traceparent, or another SDK's span. */
  private traceUnder (parent: SpanContext): TraceRecord {
    // Only a caller in another process can have its trace in MLflow: an in-process span of another
    // SDK goes elsewhere, and joining it would leave the MLflow trace without TraceInfo.
    if (this.distributed === 'join' && parent.isRemote === true && this.canJoin()) {
      return new TraceRecord(parent.traceId, this.onTraceEnd, parent.traceId, true)
    }
    // Separate: the MLflow trace needs an id of its own, since StartTraceV3 with an id in use (the
    // caller's MLflow trace, a sibling request under the same upstream trace) overwrites that
    // trace. Its spans keep the caller's W3C trace id towards OTel, so OTel propagation downstream
    // continues the caller's trace, and the caller's ids are kept as metadata.
    const record = new TraceRecord(newTraceIdHex(), this.onTraceEnd, parent.traceId)
    record.metadata[TraceMetadata.PARENT_TRACE_ID] = parent.traceId
    record.metadata[TraceMetadata.PARENT_SPAN_ID] = parent.spanId
    return record
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
