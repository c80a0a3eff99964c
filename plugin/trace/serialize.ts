import { SpanStatusCode, type SpanStatus } from '@opentelemetry/api'
import { Limits, SpanAttribute, TRACE_SCHEMA_VERSION, TraceMetadata, TraceTag } from './constants'
import { hexToBase64 } from './ids'
import { isPlainJsonText, jsonString, RawJson, safeJson, truncate } from './json'
import type { MlflowSpan, SpanEvent, TokenUsage } from './span'
import { entriesSize } from './size'
import { nsToDuration, nsToRfc3339 } from './time'
import type { TraceRecord } from './trace-record'

/** TraceInfoV3 in the snake_case JSON the REST API takes, less `trace_location` (the sink's choice). */
export interface TraceInfoJson {
  trace_id: string
  client_request_id?: string
  request_time: string
  execution_duration: string
  state: 'OK' | 'ERROR'
  request_preview?: string
  response_preview?: string
  trace_metadata: Record<string, string>
  tags: Record<string, string>
  assessments: []
}

/** A finished trace in wire form: what a sink exports. */
export class SerializedTrace {
  /**
   * @param spansJson the `traces.json` document, `{"spans": [...]}`; nanosecond times are exact JSON
   *   integers. Written even where spans go over OTLP: the TraceInfo's size stats are measured on it.
   */
  constructor (readonly record: TraceRecord, readonly info: TraceInfoJson, readonly spansJson: string) {}

  get traceId (): string {
    return this.record.id
  }

  /** What the trace weighed in the export queue: the estimate made when it ended (TraceRecord.bytes). */
  get bytes (): number {
    return this.record.bytes
  }
}

const STATUS_CODE = {
  [SpanStatusCode.UNSET]: 'STATUS_CODE_UNSET',
  [SpanStatusCode.OK]: 'STATUS_CODE_OK',
  [SpanStatusCode.ERROR]: 'STATUS_CODE_ERROR'
} as const

/** The schema version and each process's shared metadata, limited once rather than per trace. */
const sharedLimited = new WeakMap<object, Readonly<Record<string, string>>>()

export function serializeTrace (record: TraceRecord): SerializedTrace {
  const root = record.root
  const info: TraceInfoJson = {
    trace_id: record.id,
    request_time: nsToRfc3339(root.startNs),
    execution_duration: nsToDuration(root.endNs - root.startNs),
    state: root.status.code === SpanStatusCode.ERROR ? 'ERROR' : 'OK',
    trace_metadata: traceMetadata(record),
    tags: limit({}, record.tags, Limits.TAG_VALUE),
    assessments: []
  }
  // The trace list's name column; MLflow's SDKs name a trace after its root span too.
  info.tags[TraceTag.NAME] ??= truncate(root.name, Limits.TAG_VALUE)
  if (record.clientRequestId !== undefined) info.client_request_id = record.clientRequestId
  const requestPreview = record.requestPreview ?? preview(root.attributes[SpanAttribute.INPUTS])
  const responsePreview = record.responsePreview ?? preview(root.attributes[SpanAttribute.OUTPUTS])
  if (requestPreview !== undefined) info.request_preview = truncate(requestPreview, Limits.PREVIEW)
  if (responsePreview !== undefined) info.response_preview = truncate(responsePreview, Limits.PREVIEW)

  return new SerializedTrace(record, info, spansDocument(record, info))
}

/** The span document, written once: MLflow's size stats in the TraceInfo are measured on it. */
function spansDocument (record: TraceRecord, info: TraceInfoJson): string {
  // Every span starts with the trace id, and its attributes with the MLflow trace id: written once.
  // The id is hex, so its JSON text needs no escaping.
  const spanStart = '{"trace_id":"' + hexToBase64(record.traceIdHex) + '","span_id":"'
  const attributesStart = '{"' + SpanAttribute.TRACE_ID + '":"\\"' + record.id + '\\""'
  const spanSizes: number[] = []
  let spansJson = '{"spans":['
  for (let i = 0; i < record.spans.length; i++) {
    if (i > 0) spansJson += ','
    const span = spanJson(record.spans[i], spanStart, attributesStart, i === 0)
    spanSizes.push(span.length)
    spansJson += span
  }
  spansJson += ']}'
  addSizeStats(info, spansJson.length, spanSizes)
  return spansJson
}

/**
 * MLflow's size metadata (mlflow/tracing/utils add_size_stats_to_trace_metadata): the trace's and
 * each span's JSON size. Counted in characters of the JSON we send, which are its bytes for ASCII
 * text: measuring UTF-8 would copy every span once more. The TraceInfo part (without these two
 * entries, as MLflow counts it) is weighed as the export queue weighs values, not serialized again.
 * A 3.17.2 server reading spans from its database takes a trace with fewer spans than `num_spans`
 * as not yet fully exported, and its UI polls for the rest.
 */
function addSizeStats (info: TraceInfoJson, spansSize: number, spanSizes: number[]): void {
  const total = String(spansSize + INFO_FIELDS + entriesSize(info.trace_metadata) + entriesSize(info.tags) +
    textSize(info.client_request_id) + textSize(info.request_preview) + textSize(info.response_preview))
  const sorted = spanSizes.length > 1 ? spanSizes.sort((a, b) => a - b) : spanSizes
  // TraceSizeStatsKey's fields (mlflow/tracing/constant.py), written without JSON.stringify's cost.
  info.trace_metadata[TraceMetadata.SIZE_STATS] = '{"total_size_bytes":' + total + ',"num_spans":' + sorted.length +
    ',"max":' + sorted[sorted.length - 1] + ',"p25":' + percentile(sorted, 0.25) +
    ',"p50":' + percentile(sorted, 0.5) + ',"p75":' + percentile(sorted, 0.75) + '}'
  info.trace_metadata[TraceMetadata.SIZE_BYTES] = total
}

/** A TraceInfo's JSON around its values: ids, times, state, field names. */
const INFO_FIELDS = 256

function textSize (text: string | undefined): number {
  return text === undefined ? 0 : text.length + 2
}

/** MLflow's `_calculate_percentile`: linear between the nearest ranks, cut to an integer. */
function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  const index = p * (sorted.length - 1)
  const lower = Math.floor(index)
  if (lower + 1 >= sorted.length) return sorted[sorted.length - 1]
  const weight = index - lower
  return Math.trunc(sorted[lower] * (1 - weight) + sorted[lower + 1] * weight)
}

/** Schema version, then shared metadata, then the trace's own (which wins), each key and value limited. */
function traceMetadata (record: TraceRecord): Record<string, string> {
  let shared = sharedLimited.get(record.sharedMetadata)
  if (shared === undefined) {
    shared = limit({ [TraceMetadata.SCHEMA_VERSION]: TRACE_SCHEMA_VERSION }, record.sharedMetadata, Limits.METADATA_VALUE)
    sharedLimited.set(record.sharedMetadata, shared)
  }
  // Object.assign, not a spread: V8 gives a spread copy a map that each later key replaces (about
  // 0.5 µs a key on Node 20), and the trace's own metadata and the size stats add keys.
  const metadata = limit(Object.assign({}, shared), record.metadata, Limits.METADATA_VALUE)
  if (metadata[TraceMetadata.TOKEN_USAGE] === undefined) {
    const usage = tokenUsage(record.spans)
    if (usage !== undefined) metadata[TraceMetadata.TOKEN_USAGE] = truncate(JSON.stringify(usage), Limits.METADATA_VALUE)
  }
  return metadata
}

/** Sums span token usage as MLflow does: a span under a span that already reports usage is not counted again. */
function tokenUsage (spans: MlflowSpan[]): TokenUsage | undefined {
  let reporting: Set<string> | undefined
  for (const span of spans) if (span.attributes[SpanAttribute.TOKEN_USAGE] !== undefined) (reporting ??= new Set()).add(span.spanId)
  if (reporting === undefined) return undefined
  const parentOf = new Map(spans.map(s => [s.spanId, s.parentSpanId]))
  const total = { input_tokens: 0, output_tokens: 0, total_tokens: 0 }
  for (const span of spans) {
    if (!reporting.has(span.spanId)) continue
    let ancestor = parentOf.get(span.spanId)
    while (ancestor !== undefined && ancestor !== '' && !reporting.has(ancestor)) ancestor = parentOf.get(ancestor)
    if (ancestor !== undefined && reporting.has(ancestor)) continue
    const usage = usageOf(span.attributes[SpanAttribute.TOKEN_USAGE])
    total.input_tokens += Number(usage.input_tokens ?? 0)
    total.output_tokens += Number(usage.output_tokens ?? 0)
    total.total_tokens += Number(usage.total_tokens ?? 0)
  }
  return total
}

/** Token usage as set: JSON-encoded by setTokenUsage, or JSON text set as the attribute directly. */
function usageOf (value: unknown): Partial<TokenUsage> {
  try {
    const usage: unknown = value instanceof RawJson ? value.toJSON() : typeof value === 'string' ? JSON.parse(value) : value
    return typeof usage === 'object' && usage !== null ? usage : {}
  } catch {
    return {}
  }
}

function preview (value: unknown): string | undefined {
  if (value === undefined) return undefined
  return typeof value === 'string' ? value : safeJson(value)
}

/** Adds `entries` to `out` with keys and values cut to MLflow's limits. */
function limit (out: Record<string, string>, entries: Readonly<Record<string, string>>, maxValue: number): Record<string, string> {
  for (const key in entries) out[truncate(key, Limits.KEY)] = truncate(String(entries[key]), maxValue)
  return out
}

function spanJson (span: MlflowSpan, spanStart: string, attributesStart: string, isRoot: boolean): string {
  let attributes = attributesStart
  for (const key in span.attributes) {
    if (key === SpanAttribute.TRACE_ID) continue
    attributes += ',' + jsonString(key) + ':' + attributeJson(span.attributes[key])
  }
  attributes += '}'
  return spanStart + hexToBase64(span.spanId) +
    // MLflow finds the root as the span without a parent; a remote parent is in the metadata instead.
    '","trace_state":"","parent_span_id":"' + (isRoot || span.parentSpanId === '' ? '' : hexToBase64(span.parentSpanId)) +
    '","name":' + jsonString(span.name) +
    ',"start_time_unix_nano":' + span.startNs.toString() +
    ',"end_time_unix_nano":' + span.endNs.toString() +
    ',"attributes":' + attributes +
    ',"status":' + statusJson(span.status) +
    ',"events":' + eventsJson(span.events) + '}'
}

/** Every span attribute value is JSON text stored as a string (MLflow's span format). */
function attributeJson (value: unknown): string {
  // The common values, written without JSON.stringify's fixed cost: the JSON text of a finite
  // number is String(number); that of a plain string is the string in quotes, escaped once more.
  if (typeof value === 'number' && Number.isFinite(value)) return '"' + value + '"'
  if (typeof value === 'string' && isPlainJsonText(value)) return '"\\"' + value + '\\""'
  return JSON.stringify(safeJson(value))
}

function statusJson (status: SpanStatus): string {
  return '{"message":' + jsonString(status.message ?? '') + ',"code":"' + STATUS_CODE[status.code] + '"}'
}

function eventsJson (events: SpanEvent[]): string {
  if (events.length === 0) return '[]'
  return '[' + events.map(e =>
    '{"name":' + jsonString(e.name) +
    ',"time_unix_nano":' + e.timeNs.toString() +
    ',"attributes":' + safeJson(e.attributes ?? {}) + '}'
  ).join(',') + ']'
}
