// CPU per trace of serialization alone, on the export bench's chat trace, in its own process:
//   node dist/bench/serialization-worker.js '{"n":2000,"reps":9}'
// Prints one JSON line: for each encoding, µs of CPU (user + system, GC included) per trace, the
// median and the best of `reps` passes over n traces, and the bytes per trace (JSON: characters, all
// ASCII here).
//
// What each path encodes per trace: the TraceInfo for StartTraceV3 (both paths), then its spans as
// OTLP/protobuf (this plugin's default, one request per batch of up to 64 traces) or as the
// traces.json document (the artifact path). OTLP/JSON, for comparison, is OpenTelemetry's own
// JsonTraceSerializer fed the very span views encodeOtlpSpans builds (by swapping the serializer it calls).
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { MlflowTracer } from '../plugin'
import { encodeOtlpSpans } from '../plugin/trace/otlp'
import { serializeTrace } from '../plugin/trace/serialize'
import type { TraceRecord } from '../plugin/trace/trace-record'
import { chatTrace } from './chat-trace'

interface Args { n: number, reps: number }

/** The plugin's batch size (plugin/export/otlp-batcher.ts MAX_BATCH). */
const BATCH = 64

function cpuUs (): number {
  const { user, system } = process.cpuUsage()
  return user + system
}

/**
 * `reps` timed passes over all n traces, after two warm-up passes. `prepare` makes each pass (not
 * timed); the pass returns the bytes it produced.
 */
function measure (n: number, reps: number, prepare: () => () => number): { medianUs: number, bestUs: number, bytesPerTrace: number } {
  let bytes = 0
  for (let i = 0; i < 2; i++) bytes = prepare()()
  const perTrace: number[] = []
  for (let i = 0; i < reps; i++) {
    const pass = prepare()
    const before = cpuUs()
    pass()
    perTrace.push((cpuUs() - before) / n)
  }
  perTrace.sort((a, b) => a - b)
  const r2 = (x: number): number => Math.round(x * 100) / 100
  return { medianUs: r2(perTrace[perTrace.length >> 1]), bestUs: r2(perTrace[0]), bytesPerTrace: Math.round(bytes / n) }
}

function batches (records: TraceRecord[], size: number): TraceRecord[][] {
  const out: TraceRecord[][] = []
  for (let i = 0; i < records.length; i += size) out.push(records.slice(i, i + size))
  return out
}

function otlp (groups: TraceRecord[][]): number {
  let bytes = 0
  for (const g of groups) bytes += encodeOtlpSpans(g).length
  return bytes
}

/** Runs `fn` with OpenTelemetry's JSON serializer in place of the protobuf one that encodeOtlpSpans calls. */
function withJsonSerializer<T> (fn: () => T): T {
  const protobuf = ProtobufTraceSerializer.serializeRequest
  ProtobufTraceSerializer.serializeRequest = JsonTraceSerializer.serializeRequest
  try {
    return fn()
  } finally {
    ProtobufTraceSerializer.serializeRequest = protobuf
  }
}

function main (): void {
  const { n, reps } = JSON.parse(process.argv[2] ?? '{}') as Args
  if (!(n > 0) || !(reps > 0)) throw new Error(`bad arguments: ${process.argv[2] ?? '(none)'}`)
  const records: TraceRecord[] = []
  const tracer = new MlflowTracer(record => records.push(record))
  for (let i = 0; i < n; i++) chatTrace(tracer, i).end()
  if (withJsonSerializer(() => encodeOtlpSpans(records.slice(0, 1)))[0] !== '{'.charCodeAt(0)) throw new Error('the JSON serializer swap did not take')
  const single = batches(records, 1)
  const batched = batches(records, BATCH)
  const result = {
    mode: 'serialization', n, reps, batch: BATCH, spansPerTrace: records[0].spans.length,
    traceInfoJson: measure(n, reps, () => () => records.reduce((s, r) => s + JSON.stringify(serializeTrace(r).info).length, 0)),
    otlpProtobuf: measure(n, reps, () => () => otlp(single)),
    otlpProtobufBatched: measure(n, reps, () => () => otlp(batched)),
    otlpJson: measure(n, reps, () => () => withJsonSerializer(() => otlp(single))),
    otlpJsonBatched: measure(n, reps, () => () => withJsonSerializer(() => otlp(batched))),
    // Fresh SerializedTraces for each pass: the document is written once, then cached.
    tracesJson: measure(n, reps, () => {
      const traces = records.map(serializeTrace)
      return () => traces.reduce((s, t) => s + t.spansJson.length, 0)
    })
  }
  process.stdout.write(JSON.stringify(result) + '\n')
}

main()
