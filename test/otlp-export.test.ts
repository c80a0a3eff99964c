// The OTLP span path under injected faults. What MLflow stores is checked against real servers in
// test/span-store.test.ts; a fake is used here only to refuse, fail and count requests.
import { ROOT_CONTEXT, trace } from '@opentelemetry/api'
import t, { type Test } from 'tap'
import { FST_MLFLOW_UNSUPPORTED_SERVER } from '../plugin/errors'
import { MlflowTracing, type MlflowTracingOptions } from '../plugin/tracing'
import { defaultAnswer, FakeServer, recordingLogger, type RecordedRequest } from './helpers/fake-server'

const OTLP = '/v1/traces'
const TRACES = '/api/3.0/mlflow/traces'
const ARTIFACTS = '/api/2.0/mlflow-artifacts/artifacts/*'
const FAST = { initialBackoffMs: 10, maxBackoffMs: 200 }

async function otlpServer (t: Test, version?: string): Promise<FakeServer> {
  const server = (await FakeServer.start()).withOtlp(version)
  t.teardown(async () => await server.close())
  return server
}

function setup (t: Test, server: FakeServer, opts: MlflowTracingOptions = {}, env: Record<string, string> = {}): { tracing: MlflowTracing, logger: ReturnType<typeof recordingLogger> } {
  const logger = recordingLogger()
  const tracing = new MlflowTracing({ logger, ...opts, queue: { ...FAST, ...opts.queue } }, { MLFLOW_TRACKING_URI: server.url, MLFLOW_EXPERIMENT_ID: '7', ...env })
  t.teardown(async () => { await tracing.shutdown(100) })
  return { tracing, logger }
}

/** Ends a two-span trace; returns the MLflow trace id and its hex. */
function endTrace (tracing: MlflowTracing, childName = 'child'): { id: string, hex: string } {
  const root = tracing.tracer.startSpan('root')
  tracing.tracer.startSpan(childName, {}, trace.setSpan(ROOT_CONTEXT, root)).end()
  root.end()
  return { id: root.trace.id, hex: root.trace.traceIdHex }
}

/** Which of these traces an OTLP request carries (a trace id is 16 raw bytes in protobuf). */
function tracesIn (request: RecordedRequest, hexes: string[]): string[] {
  return hexes.filter(hex => request.raw.includes(Buffer.from(hex, 'hex')))
}

t.test('before 3.7: spans over OTLP first, then StartTraceV3; no artifact once the server says it stores spans', async t => {
  const server = await otlpServer(t, '3.6.0')
  const { tracing, logger } = setup(t, server, {}, { MLFLOW_WORKSPACE: 'team-a' })
  await tracing.start()
  t.match(logger.calls.info.at(-1)?.msg, /spans over OTLP into the span store \(MLflow 3\.6\.0\)/, 'the start-up line says how spans go')
  const { id, hex } = endTrace(tracing)
  t.ok(await tracing.flush(5000))
  const [otlp] = server.received('POST', OTLP)
  t.equal(otlp.headers['content-type'], 'application/x-protobuf')
  t.equal(otlp.headers['x-mlflow-experiment-id'], '7')
  t.equal(otlp.headers['x-mlflow-workspace'], 'team-a')
  t.same(tracesIn(otlp, [hex]), [hex])
  const start = server.received('POST', TRACES)
  t.equal(start.length, 1)
  t.ok(start[0].at >= otlp.at, 'StartTraceV3 after the spans: it merges into the row they made')
  t.equal(JSON.parse(start[0].body).trace.trace_info.trace_id, id)
  t.same(server.received('PUT', ARTIFACTS), [], 'no traces.json')
  t.match(tracing.stats(), { exported: 1, retried: 0, dropped: { rejected: 0, failed: 0 } })
})

t.test('from 3.7: StartTraceV3 goes alongside the spans, and no artifact follows whichever the server took first', async t => {
  const server = await otlpServer(t)
  // The spans' answer comes late; StartTraceV3's says nothing of where spans are (it came first).
  server.route('POST', OTLP, async () => await new Promise(resolve => setTimeout(resolve, 300, { body: '', headers: { 'content-type': 'application/x-protobuf' } })))
  server.route('POST', TRACES, defaultAnswer)
  const { tracing } = setup(t, server)
  await tracing.start()
  const { id } = endTrace(tracing)
  t.ok(await tracing.flush(5000))
  const [otlp] = server.received('POST', OTLP)
  const start = server.received('POST', TRACES)
  t.equal(start.length, 1)
  t.equal(JSON.parse(start[0].body).trace.trace_info.trace_id, id)
  t.ok(start[0].at - otlp.at < 250, 'StartTraceV3 did not wait for the spans\' answer')
  t.same(server.received('PUT', ARTIFACTS), [], 'no traces.json')
  t.match(tracing.stats(), { exported: 1, retried: 0 })
})

t.test('traces that end together share one OTLP request', async t => {
  const server = await otlpServer(t)
  const { tracing } = setup(t, server)
  await tracing.start()
  const hexes = [endTrace(tracing), endTrace(tracing), endTrace(tracing)].map(x => x.hex)
  t.ok(await tracing.flush(5000))
  const requests = server.received('POST', OTLP)
  t.equal(requests.length, 1)
  t.same(tracesIn(requests[0], hexes), hexes)
  t.equal(tracing.stats().exported, 3)
})

t.test('under a steady load too: traces ending a few ms apart share one OTLP request', async t => {
  const server = await otlpServer(t)
  const { tracing } = setup(t, server)
  await tracing.start()
  const first = endTrace(tracing).hex
  await new Promise(resolve => setTimeout(resolve, 3))
  const second = endTrace(tracing).hex
  t.ok(await tracing.flush(5000))
  const requests = server.received('POST', OTLP)
  t.equal(requests.length, 1)
  t.same(tracesIn(requests[0], [first, second]), [first, second])
})

// Before 3.7, where StartTraceV3 waits for the spans. From 3.7 it goes alongside them, so a trace
// whose spans are refused keeps the TraceInfo the server took (README: Export queue).
t.test('a batch refused for one bad trace: each trace is sent alone, only the bad one is rejected', async t => {
  const server = await otlpServer(t, '3.6.0')
  server.route('POST', OTLP, req => req.raw.includes(Buffer.from('poison'))
    ? { status: 400, body: { detail: 'Invalid OpenTelemetry format' } }
    : { body: '' })
  const { tracing, logger } = setup(t, server)
  await tracing.start()
  const good = [endTrace(tracing), endTrace(tracing)]
  const bad = endTrace(tracing, 'poison')
  t.ok(await tracing.flush(5000))
  const requests = server.received('POST', OTLP).map(r => tracesIn(r, [...good, bad].map(x => x.hex)))
  t.equal(requests[0].length, 3, 'first, all three together')
  t.same(requests.slice(1).map(ids => ids.length), [1, 1, 1], 'then each alone')
  t.match(tracing.stats(), { exported: 2, dropped: { rejected: 1 } })
  t.same(server.received('POST', TRACES).map(r => JSON.parse(r.body).trace.trace_info.trace_id).sort(), good.map(x => x.id).sort(),
    'the rejected trace gets no TraceInfo either')
  t.equal(logger.calls.error.length, 1, 'the rejection is logged once')
})

t.test('a transient failure retries only the call that failed: spans are not sent twice, nor TraceInfo', async t => {
  const cases = [
    { failing: OTLP, answer: { status: 503, body: { detail: 'busy' } }, otlpCalls: 2, startCalls: 1 },
    { failing: TRACES, answer: { status: 502, body: { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'proxy' } }, otlpCalls: 1, startCalls: 2 }
  ]
  for (const { failing, answer, otlpCalls, startCalls } of cases) {
    const server = await otlpServer(t)
    server.fail('POST', failing, answer)
    const { tracing } = setup(t, server)
    await tracing.start()
    endTrace(tracing)
    t.ok(await tracing.flush(5000))
    t.equal(server.received('POST', OTLP).length, otlpCalls, `${failing} failed once: OTLP calls`)
    t.equal(server.received('POST', TRACES).length, startCalls, `${failing} failed once: StartTraceV3 calls`)
    t.match(tracing.stats(), { exported: 1, retried: 1 })
  }
})

t.test('501 (a store without spans): one warning, then traces.json artifacts for this and every later trace', async t => {
  const server = await otlpServer(t)
  server.route('POST', OTLP, () => ({ status: 501, body: { detail: 'REST OTLP span logging is not supported by FileStore' } }))
  server.route('POST', TRACES, req => {
    const info = JSON.parse(req.body).trace.trace_info as { trace_id: string, tags: Record<string, string> }
    return { body: { trace: { trace_info: { ...info, tags: { ...info.tags, 'mlflow.artifactLocation': `mlflow-artifacts:/7/traces/${info.trace_id}/artifacts` } } } } }
  })
  const { tracing, logger } = setup(t, server)
  await tracing.start()
  endTrace(tracing)
  t.ok(await tracing.flush(5000))
  endTrace(tracing)
  t.ok(await tracing.flush(5000))
  t.equal(server.received('POST', OTLP).length, 1, 'asked once')
  t.equal(server.received('PUT', ARTIFACTS).length, 2, 'both traces uploaded as artifacts')
  t.match(tracing.stats(), { exported: 2, retried: 0, dropped: { rejected: 0, failed: 0 } })
  t.equal(logger.calls.warn.length, 1)
  t.match(logger.calls.warn[0].msg, /spans go as traces\.json artifacts/)
})

t.test('spanUpload: artifact never asks /v1/traces; a server before 3.4 is not asked either', async t => {
  for (const [what, version, opts] of [['forced', '3.17.2', { spanUpload: 'artifact' as const }], ['3.3', '3.3.1', {}]] as const) {
    const server = await otlpServer(t, version)
    // A server that does not store spans does not tag the trace so.
    server.route('POST', TRACES, req => {
      const info = JSON.parse(req.body).trace.trace_info as { trace_id: string, tags: Record<string, string> }
      return { body: { trace: { trace_info: { ...info, tags: { ...info.tags, 'mlflow.artifactLocation': `mlflow-artifacts:/7/traces/${info.trace_id}/artifacts` } } } } }
    })
    const { tracing, logger } = setup(t, server, opts)
    await tracing.start()
    t.match(logger.calls.info.at(-1)?.msg, /spans as traces\.json artifacts/, what)
    endTrace(tracing)
    t.ok(await tracing.flush(5000))
    t.equal(server.received('POST', OTLP).length, 0, what)
    t.equal(server.received('PUT', ARTIFACTS).length, 1, what)
  }
})

t.test('a server older than 3.2 fails start-up with a coded error naming the minimum version', async t => {
  const server = await otlpServer(t, '3.1.4')
  const { tracing } = setup(t, server)
  await t.rejects(tracing.start(), { code: 'FST_MLFLOW_UNSUPPORTED_SERVER', message: /3\.1\.4.*MLflow 3\.2 or newer/ })
  t.ok(new FST_MLFLOW_UNSUPPORTED_SERVER('3.1.0', '3.2') instanceof Error)
})

t.test('a bad spanUpload is refused at construction, naming the option', async t => {
  t.throws(() => new MlflowTracing({ spanUpload: 'grpc' as never }, {}), { code: 'FST_MLFLOW_INVALID_OPTION', message: /spanUpload \(MLFLOW_TRACING_SPAN_UPLOAD\).*auto, otlp, artifact/ })
  t.throws(() => new MlflowTracing({}, { MLFLOW_TRACING_SPAN_UPLOAD: 'both' }), { code: 'FST_MLFLOW_INVALID_OPTION' })
})

t.test('a joined trace gets spans only: no StartTraceV3, which would overwrite the upstream TraceInfo', async t => {
  const server = await otlpServer(t)
  const { tracing } = setup(t, server, { distributedTracing: 'join' })
  await tracing.start()
  const upstream = trace.setSpanContext(ROOT_CONTEXT, { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1, isRemote: true })
  const root = tracing.tracer.startSpan('downstream', {}, upstream)
  t.ok(root.trace.joined)
  root.end()
  t.ok(await tracing.flush(5000))
  t.same(tracesIn(server.received('POST', OTLP)[0], [root.trace.traceIdHex]), [root.trace.traceIdHex])
  t.equal(server.received('POST', TRACES).length, 0)
  t.equal(tracing.stats().exported, 1)
})

t.test("'join' where spans go as artifacts: a separate trace, never one that could not be stored", async t => {
  const server = await otlpServer(t, '3.3.0')
  const { tracing } = setup(t, server, { distributedTracing: 'join' })
  await tracing.start()
  const upstream = trace.setSpanContext(ROOT_CONTEXT, { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1, isRemote: true })
  const root = tracing.tracer.startSpan('downstream', {}, upstream)
  t.notOk(root.trace.joined)
  t.not(root.trace.traceIdHex, '0af7651916cd43dd8448eb211c80319c', 'an id of its own')
  t.equal(root.trace.metadata['w3c.parent_trace_id'], '0af7651916cd43dd8448eb211c80319c')
  root.end()
  t.ok(await tracing.flush(5000))
  t.equal(server.received('POST', TRACES).length, 1)
  t.match(tracing.stats(), { exported: 1, dropped: { failed: 0 } })
})
