// Export throughput against a real MLflow server, in its own process:
//   node dist/bench/export-worker.js '{"mode":"pipeline"|"sequential","n":1500,"uri":"http://…","experimentName":"…","concurrency":8}'
// Prints one JSON line with the result on stdout.
//
// pipeline:   MlflowTracing (default queue, unless `concurrency` is given): end N chat-like traces,
//             then await flush(); rate = traces exported / wall time.
// sequential: the same kind of traces, serialized by the same serializer, uploaded one at a time
//             with `await sink.export(trace, signal)` through an MlflowSink (no queue, no concurrency).
// Both then count what the server holds in the experiment (search) and read back one trace's spans.
import { ROOT_CONTEXT, SpanKind, trace as otelTrace } from '@opentelemetry/api'
import { setTimeout as sleep } from 'node:timers/promises'
import { MlflowClient, MlflowTracer, MlflowTracing, SpanType, TraceMetadata, type MlflowSpan, type SerializedTrace } from '../plugin'
import { noAuth } from '../plugin/export/auth'
import { MlflowSink } from '../plugin/export/mlflow-sink'
import { MemorySink } from '../plugin/export/memory-sink'
import type { SpanUploadOption } from '../plugin/export/span-upload'
import { serializeTrace } from '../plugin/trace/serialize'

interface Args {
  mode: 'pipeline' | 'sequential' | 'burst-check'
  n: number
  uri?: string
  experimentName?: string
  concurrency?: number
  /** sequential only: stop after this long and report the rate so far. */
  maxSeconds?: number
  /** How spans reach the server: OTLP into its span store or the traces.json artifact. Default auto. */
  spanUpload?: SpanUploadOption
}

/** The producer waits while this many traces are queued: the default queue holds 1000. */
const HIGH_WATER = 500

/** A chat request: root CHAIN span, a retriever and a chat-model child, small inputs and outputs. */
function chatTrace (tracer: MlflowTracer, i: number): MlflowSpan {
  const question = `Question ${i}: what is the capital of France, and why?`
  const root = tracer.startSpan('POST /chat', { kind: SpanKind.SERVER, root: true })
  root.setSpanType(SpanType.CHAIN)
  root.setAttributes({ 'http.request.method': 'POST', 'http.route': '/chat' })
  root.setInputs({ messages: [{ role: 'user', content: question }] })
  root.trace.metadata[TraceMetadata.USER] = `user-${i % 50}@example.com`
  root.trace.metadata[TraceMetadata.SESSION] = `session-${i % 200}`
  root.trace.clientRequestId = `req-${i}`
  const ctx = otelTrace.setSpan(ROOT_CONTEXT, root)

  const retrieve = tracer.startSpan('retrieve', {}, ctx)
  retrieve.setSpanType(SpanType.RETRIEVER)
  retrieve.setInputs({ query: question })
  retrieve.setOutputs([{ page_content: 'Paris is the capital and largest city of France.', metadata: { doc_uri: 'kb://geo/fr' } }])
  retrieve.end()

  const llm = tracer.startSpan('chat gpt-4o-mini', { kind: SpanKind.CLIENT }, ctx)
  llm.setSpanType(SpanType.CHAT_MODEL)
  llm.setInputs({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: question }] })
  llm.setLlmResponse({
    model: 'gpt-4o-mini-2024-07-18',
    id: `chatcmpl-${i}`,
    finishReasons: ['stop'],
    usage: { input_tokens: 42, output_tokens: 17 },
    outputs: { choices: [{ message: { role: 'assistant', content: 'Paris: it is the seat of government.' } }] }
  })
  llm.end()

  root.setOutputs({ answer: 'Paris: it is the seat of government.' })
  root.setAttribute('http.response.status_code', 200)
  return root
}

/** Every trace in the experiment, by paging through search. */
async function countStored (client: MlflowClient, experimentId: string): Promise<number> {
  let count = 0
  let pageToken: string | undefined
  do {
    const page = await client.searchTraces({ experimentIds: [experimentId], maxResults: 500, pageToken })
    count += page.traces.length
    pageToken = page.nextPageToken
  } while (pageToken !== undefined)
  return count
}

async function spotCheck (client: MlflowClient, traceId: string): Promise<number> {
  return (await client.getTraceSpans(traceId)).spans.length
}

async function pipeline (args: Args): Promise<object> {
  const tracing = new MlflowTracing({
    trackingUri: args.uri, experimentName: args.experimentName, spanUpload: args.spanUpload,
    queue: args.concurrency === undefined ? undefined : { concurrency: args.concurrency }
  }, {})
  await tracing.start()
  const experimentId = await tracing.experimentId() as string
  const client = tracing.client as MlflowClient
  let maxQueued = 0
  let waits = 0
  let lastId = ''
  const t0 = performance.now()
  for (let i = 0; i < args.n; i++) {
    // Backpressure from the outside: a producer far faster than the server must not outrun the
    // queue bound, or the oldest traces are dropped (by design). A server under real load feeds
    // traces at request pace; this keeps the comparison about the exporter, not the bound.
    while (tracing.stats().queued >= HIGH_WATER) {
      waits++
      await sleep(2)
    }
    const root = chatTrace(tracing.tracer, i)
    lastId = root.trace.id
    root.end()
    maxQueued = Math.max(maxQueued, tracing.stats().queued)
  }
  const flushed = await tracing.flush(300_000)
  const seconds = (performance.now() - t0) / 1000
  const stats = tracing.stats()
  const stored = await countStored(client, experimentId)
  const spans = await spotCheck(client, lastId)
  await tracing.shutdown(1000)
  return {
    mode: 'pipeline', n: args.n, concurrency: args.concurrency ?? 8, flushed, seconds,
    tracesPerSec: stats.exported / seconds, stats, maxQueued, producerWaits: waits,
    storedInExperiment: stored, spansOfLastTrace: spans, experimentId
  }
}

async function sequential (args: Args): Promise<object> {
  const serialized: SerializedTrace[] = []
  const tracer = new MlflowTracer(record => serialized.push(serializeTrace(record)))
  for (let i = 0; i < args.n; i++) chatTrace(tracer, i).end()
  const client = new MlflowClient({ host: args.uri as string, auth: noAuth, timeoutMs: 10_000 })
  const quiet = { info () {}, warn () {}, error () {} }
  const sink = new MlflowSink(client, false, { experimentName: args.experimentName, credentialSetting: 'none' }, args.spanUpload ?? 'auto', quiet)
  const experimentId = await sink.experimentId()
  const signal = new AbortController().signal
  const deadline = performance.now() + (args.maxSeconds ?? 600) * 1000
  let exported = 0
  let failed = 0
  let firstError: string | undefined
  const t0 = performance.now()
  for (const t of serialized) {
    try {
      await sink.export(t, signal)
      exported++
    } catch (err) {
      failed++
      firstError ??= (err as Error).message
    }
    if (performance.now() > deadline) break
  }
  const seconds = (performance.now() - t0) / 1000
  const stored = await countStored(client, experimentId)
  const spans = await spotCheck(client, serialized[0].traceId)
  return {
    mode: 'sequential', n: args.n, attempted: exported + failed, exported, failed, firstError, seconds,
    tracesPerSec: exported / seconds, storedInExperiment: stored, spansOfFirstTrace: spans,
    bytesPerTrace: Math.round(serialized.reduce((s, t) => s + t.bytes, 0) / serialized.length), experimentId
  }
}

/** No server: what ending N traces in one synchronous burst does to the default queue. */
async function burstCheck (args: Args): Promise<object> {
  const tracing = new MlflowTracing({ sink: new MemorySink(false) }, {})
  for (let i = 0; i < args.n; i++) chatTrace(tracing.tracer, i).end()
  await tracing.flush(10_000)
  return { mode: 'burst-check', n: args.n, stats: tracing.stats() }
}

async function main (): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as Args
  const run = { pipeline, sequential, 'burst-check': burstCheck }[args.mode]
  if (run === undefined || !(args.n > 0)) throw new Error(`bad arguments: ${process.argv[2] ?? '(none)'}`)
  const result = await run(args)
  const { user, system } = process.cpuUsage()
  // Whole-process CPU and wall time (start-up included), for the runner's CPU accounting.
  process.stdout.write(JSON.stringify({ ...result, cpuSec: (user + system) / 1e6, wallSec: performance.now() / 1000 }) + '\n')
}

main().then(() => process.exit(0), err => {
  process.stderr.write(`export worker: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
