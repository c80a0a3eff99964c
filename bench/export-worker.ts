// Export throughput against a real MLflow server, in its own process:
//   node dist/bench/export-worker.js '{"mode":"pipeline"|"sequential"|"burst-check","n":1500,"uri":"http://…","experimentName":"…","concurrency":8,"spanUpload":"otlp"|"artifact"}'
// Prints {"phase":"exporting"} and {"phase":"exported"} around the export itself (the runner reads the
// CPU of this process and of the MLflow server between them), then one JSON line with the result.
//
// pipeline:   MlflowTracing (default queue, unless `concurrency` is given): end N chat-like traces,
//             then await flush(); rate = traces exported / wall time.
// sequential: the same kind of traces, serialized by the same serializer, uploaded one at a time
//             with `await sink.export(trace, signal)` through an MlflowSink (no queue, no concurrency).
// Both then count what the server holds in the experiment (search), and where it says each trace's
// spans are, and read back one trace's spans.
import { setTimeout as sleep } from 'node:timers/promises'
import { MlflowClient, MlflowTracer, MlflowTracing, TraceTag, type SerializedTrace } from '../plugin'
import { noAuth } from '../plugin/export/auth'
import { MlflowSink } from '../plugin/export/mlflow-sink'
import { MemorySink } from '../plugin/export/memory-sink'
import type { SpanUploadOption } from '../plugin/export/span-upload'
import { serializeTrace } from '../plugin/trace/serialize'
import { chatTrace } from './chat-trace'

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

/** Every trace in the experiment, by paging through search, and how many have their spans where (the server's tag). */
async function countStored (client: MlflowClient, experimentId: string): Promise<{ stored: number, spansLocation: Record<string, number> }> {
  let stored = 0
  const spansLocation: Record<string, number> = {}
  let pageToken: string | undefined
  do {
    const page = await client.searchTraces({ experimentIds: [experimentId], maxResults: 500, pageToken })
    stored += page.traces.length
    for (const t of page.traces) {
      const location = t.tags[TraceTag.SPANS_LOCATION] ?? '(no tag)'
      spansLocation[location] = (spansLocation[location] ?? 0) + 1
    }
    pageToken = page.nextPageToken
  } while (pageToken !== undefined)
  return { stored, spansLocation }
}

function phase (name: 'exporting' | 'exported'): void {
  process.stdout.write(JSON.stringify({ phase: name }) + '\n')
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
  phase('exporting')
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
  phase('exported')
  const stats = tracing.stats()
  const { stored, spansLocation } = await countStored(client, experimentId)
  const spans = await spotCheck(client, lastId)
  await tracing.shutdown(1000)
  return {
    mode: 'pipeline', spanUpload: args.spanUpload ?? 'auto', n: args.n, concurrency: args.concurrency ?? 8, flushed, seconds,
    tracesPerSec: stats.exported / seconds, exported: stats.exported, stats, maxQueued, producerWaits: waits,
    storedInExperiment: stored, spansLocation, spansOfLastTrace: spans, experimentId
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
  phase('exporting')
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
  phase('exported')
  const { stored, spansLocation } = await countStored(client, experimentId)
  const spans = await spotCheck(client, serialized[0].traceId)
  return {
    mode: 'sequential', spanUpload: args.spanUpload ?? 'auto', n: args.n, attempted: exported + failed, exported, failed, firstError, seconds,
    tracesPerSec: exported / seconds, storedInExperiment: stored, spansLocation, spansOfFirstTrace: spans,
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
  process.stdout.write(JSON.stringify(await run(args)) + '\n')
}

main().then(() => process.exit(0), err => {
  process.stderr.write(`export worker: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
