import { TraceFlags, type Attributes, type HrTime, type SpanContext, type SpanStatus } from '@opentelemetry/api'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { RawJson } from './json'
import type { MlflowSpan, SpanEvent } from './span'
import type { TraceRecord } from './trace-record'

type ReadableSpans = Parameters<typeof ProtobufTraceSerializer.serializeRequest>[0]

// The serializer groups spans by resource and scope identity: one of each for the process.
const RESOURCE = Object.freeze({ attributes: Object.freeze({}) })
const SCOPE = Object.freeze({ name: 'fastify-mlflow-tracing' })
const NO_LINKS: readonly never[] = Object.freeze([])

/**
 * One OTLP/protobuf ExportTraceServiceRequest for the spans of `records`, encoded by OpenTelemetry's
 * own serializer. Protobuf: older servers (3.6.0 among them) take nothing else on `/v1/traces`.
 */
export function encodeOtlpSpans (records: readonly TraceRecord[]): Uint8Array {
  const spans: OtlpSpan[] = []
  for (const record of records) {
    for (let i = 0; i < record.spans.length; i++) spans.push(new OtlpSpan(record, record.spans[i], i === 0))
  }
  return ProtobufTraceSerializer.serializeRequest(spans as unknown as ReadableSpans) as Uint8Array
}

/** A view of one of our spans in the shape of the SDK's ReadableSpan, which the serializer reads. */
class OtlpSpan {
  readonly resource = RESOURCE
  readonly instrumentationScope = SCOPE
  readonly links = NO_LINKS
  readonly droppedAttributesCount = 0
  readonly droppedEventsCount = 0
  readonly droppedLinksCount = 0
  readonly name: string
  readonly kind: number
  readonly startTime: HrTime
  readonly endTime: HrTime
  readonly status: SpanStatus
  readonly attributes: Attributes
  readonly events: Array<{ name: string, time: HrTime, attributes?: Attributes }>
  readonly parentSpanContext: SpanContext | undefined
  private readonly context: SpanContext

  constructor (record: TraceRecord, span: MlflowSpan, isRoot: boolean) {
    // The MLflow trace's own id, not the W3C trace the span reports to OTel: MLflow derives the
    // trace id (`tr-<hex>`) from it, and it must be the id StartTraceV3 records.
    this.context = { traceId: record.traceIdHex, spanId: span.spanId, traceFlags: TraceFlags.SAMPLED }
    // MLflow finds the root as the span without a parent; only a joined trace's root keeps its remote one.
    const parent = isRoot && !record.joined ? '' : span.parentSpanId
    this.parentSpanContext = parent === '' ? undefined : { traceId: record.traceIdHex, spanId: parent, traceFlags: TraceFlags.SAMPLED, isRemote: isRoot }
    this.name = span.name
    this.kind = span.kind
    this.startTime = hrTime(span.startNs)
    this.endTime = hrTime(span.endNs)
    this.status = span.status
    this.attributes = nativeAttributes(span.attributes)
    this.events = span.events.length === 0 ? [] : span.events.map(otlpEvent)
  }

  spanContext (): SpanContext {
    return this.context
  }
}

/**
 * MLflow's ingest JSON-encodes each attribute value once (`Span.from_otel_proto`), so values go as
 * what they are: an object as a key-value list, not its JSON text, which would be encoded twice.
 */
function nativeAttributes (attributes: Record<string, unknown>): Attributes {
  const out: Record<string, unknown> = {}
  for (const key in attributes) {
    const value = attributes[key]
    out[key] = value instanceof RawJson ? value.toJSON() : value
  }
  return out as Attributes
}

function otlpEvent (event: SpanEvent): { name: string, time: HrTime, attributes?: Attributes } {
  return { name: event.name, time: hrTime(event.timeNs), attributes: event.attributes }
}

function hrTime (ns: bigint): HrTime {
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)]
}
