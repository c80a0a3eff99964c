import { SpanStatusCode, type Attributes, type SpanKind, type SpanStatus } from '@opentelemetry/api'
import { RawJson, safeJson } from '../../trace/json'
import { MlflowSpan, type SpanEvent } from '../../trace/span'
import { TraceRecord } from '../../trace/trace-record'

/** Bumped when the line's shape changes: a line of another version is skipped, not misread. */
const VERSION = 1

/**
 * An attribute value that JSON alone would not bring back: JSON text the span already holds
 * (`$`, written as it is on export), a number JSON cannot write (`#`), a BigInt (`n`).
 */
type EncodedValue = string | number | boolean | { $: string } | { '#': string } | { n: string }

interface SpanLine {
  i: string
  p: string
  n: string
  k: number
  s: string
  e: string
  a: Record<string, EncodedValue>
  c: number
  m?: string
  ev?: Array<{ n: string, t: string, a?: Attributes }>
}

interface TraceLine {
  v: number
  t: string
  o?: string
  j?: 1
  b: number
  m: Record<string, string>
  sm: Readonly<Record<string, string>>
  g: Record<string, string>
  c?: string
  rq?: string
  rs?: string
  s: SpanLine[]
}

/**
 * One finished trace as one JSON line (no newline), keeping everything serialization and OTLP
 * encoding read, in the same order: a trace read back is exported exactly as it would have been.
 */
export function encodeTrace (record: TraceRecord): string {
  const line: TraceLine = {
    v: VERSION,
    t: record.traceIdHex,
    b: record.bytes,
    m: record.metadata,
    sm: record.sharedMetadata,
    g: record.tags,
    c: record.clientRequestId,
    rq: record.requestPreview,
    rs: record.responsePreview,
    s: record.spans.map(encodeSpan)
  }
  if (record.otelTraceId !== record.traceIdHex) line.o = record.otelTraceId
  if (record.joined) line.j = 1
  return JSON.stringify(line)
}

/** The trace of one line; throws on a line that is not one (torn, foreign, another version). */
export function decodeTrace (text: string): TraceRecord {
  const line = JSON.parse(text) as TraceLine
  if (line?.v !== VERSION || typeof line.t !== 'string' || !Array.isArray(line.s) || line.s.length === 0) {
    throw new Error('not a spooled trace of this version')
  }
  const record = new TraceRecord(line.t, ignoreEnd, line.o ?? line.t, line.j === 1)
  Object.assign(record.metadata, line.m)
  Object.assign(record.tags, line.g)
  record.sharedMetadata = Object.freeze({ ...line.sm })
  record.clientRequestId = line.c
  record.requestPreview = line.rq
  record.responsePreview = line.rs
  for (const span of line.s) decodeSpan(record, span)
  // Ended as it was: the root's end (and a joined trace's root attributes) happened before spooling.
  record.finalized = true
  record.bytes = line.b
  return record
}

function ignoreEnd (): void {}

function encodeSpan (span: MlflowSpan): SpanLine {
  const attributes: Record<string, EncodedValue> = {}
  for (const key in span.attributes) attributes[key] = encodeValue(span.attributes[key])
  const line: SpanLine = {
    i: span.spanId, p: span.parentSpanId, n: span.name, k: span.kind,
    s: span.startNs.toString(), e: span.endNs.toString(), a: attributes, c: span.status.code
  }
  if (span.status.message !== undefined) line.m = span.status.message
  if (span.events.length > 0) line.ev = span.events.map(e => ({ n: e.name, t: e.timeNs.toString(), a: e.attributes }))
  return line
}

function encodeValue (value: unknown): EncodedValue {
  if (value instanceof RawJson) return { $: value.json }
  if (typeof value === 'number') return Number.isFinite(value) ? value : { '#': String(value) }
  if (typeof value === 'string' || typeof value === 'boolean') return value
  if (typeof value === 'bigint') return { n: value.toString() }
  // Anything else (set past setAttribute's checks) is exported as its JSON text: keep that.
  return { $: safeJson(value) }
}

function decodeValue (value: EncodedValue): unknown {
  if (typeof value !== 'object') return value
  if ('$' in value) return new RawJson(value.$)
  if ('#' in value) return Number(value['#'])
  return BigInt(value.n)
}

function decodeSpan (record: TraceRecord, line: SpanLine): void {
  const span = new MlflowSpan(record, line.n, line.p, BigInt(line.s), line.k as SpanKind)
  ;(span as { spanId: string }).spanId = line.i
  for (const key in line.a) span.attributes[key] = decodeValue(line.a[key])
  for (const e of line.ev ?? []) {
    const event: SpanEvent = { name: e.n, timeNs: BigInt(e.t) }
    if (e.a !== undefined) event.attributes = e.a
    span.events.push(event)
  }
  const status: SpanStatus = { code: line.c as SpanStatusCode }
  if (line.m !== undefined) status.message = line.m
  span.status = status
  span.endNs = BigInt(line.e)
  span.ended = true
}
