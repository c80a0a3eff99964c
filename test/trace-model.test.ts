import t from 'tap'
import { context, trace, SpanStatusCode } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { MlflowTracer } from '../plugin/trace/tracer'
import { serializeTrace } from '../plugin/trace/serialize'
import { hexToBase64 } from '../plugin/trace/ids'
import { nowNs, nsToDuration, nsToRfc3339, toNs } from '../plugin/trace/time'
import type { TraceRecord } from '../plugin/trace/trace-record'

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

function collect (): { tracer: MlflowTracer, ended: TraceRecord[] } {
  const ended: TraceRecord[] = []
  return { tracer: new MlflowTracer(r => ended.push(r)), ended }
}

/** Metadata less the size stats, which every trace has. */
function withoutSizes (metadata: Record<string, string>): Record<string, string> {
  const { 'mlflow.trace.sizeStats': _stats, 'mlflow.trace.sizeBytes': _bytes, ...rest } = metadata
  return rest
}

t.test('ids: the spec worked example (base64 of raw bytes, not of the hex text)', async t => {
  t.equal(hexToBase64('ad9a3d0c8c2cfba776b5e8c80970f883'), 'rZo9DIws+6d2tejICXD4gw==')
  t.equal(hexToBase64('0ce0f6aa367a66b5'), 'DOD2qjZ6ZrU=')
})

t.test('times: durations and the OTel time inputs', async t => {
  t.equal(nsToDuration(83_000_000n), '0.083000000s')
  t.equal(nsToDuration(2_500_000_001n), '2.500000001s')
  t.equal(toNs([1749996461, 282772491]), 1749996461282772491n)
  t.equal(toNs(new Date(1749996461282)), 1749996461282000000n)
  // Successive calls within a second, across seconds and back, before 1970 and past year 9999.
  const ms = [1749996461282, 1749996461002, 1749996461999, 1749996462000, 1749996461090, 0, -1, -1001, 253402300800000]
  for (const m of ms) t.equal(nsToRfc3339(BigInt(m) * 1_000_000n), new Date(m).toISOString(), `request_time of ${m} ms`)
  t.equal(nsToRfc3339(1749996461282_999_999n), '2025-06-15T14:07:41.282Z', 'sub-millisecond digits are cut')
})

t.test('times: a span never starts before a Date.now() read ahead of it', async t => {
  // A `trace.timestamp_ms >= before` search must find a trace started after `before` was read.
  let early = 0
  const until = Date.now() + 20
  while (Date.now() < until) {
    const before = Date.now()
    if (nowNs() / 1_000_000n < BigInt(before)) early++
  }
  t.equal(early, 0)
})

t.test('a trace serializes to TraceInfoV3 and the traces.json document', async t => {
  const { tracer, ended } = collect()
  const root = tracer.startSpan('POST /chat')
  root.setSpanType('AGENT').setInputs({ message: 'hello' })
  root.trace.setMetadata({ 'mlflow.trace.user': 'alice@example.com' })
  root.trace.setTags({ route: '/chat' })
  root.trace.clientRequestId = 'req-1'
  const llm = tracer.startSpan('llm', {}, trace.setSpan(context.active(), root))
  llm.setSpanType('LLM').setAttributes({ 'gen_ai.request.model': 'fake', 'gen_ai.usage.input_tokens': 3 })
  llm.setTokenUsage({ input_tokens: 3, output_tokens: 4 })
  // A nested span reporting usage too is not counted twice (MLflow's roll-up rule).
  const inner = tracer.startSpan('inner', {}, trace.setSpan(context.active(), llm))
  inner.setTokenUsage({ input_tokens: 100, output_tokens: 100 })
  inner.end()
  llm.end()
  t.equal(ended.length, 0, 'the trace ends with its root, not before')
  root.setOutputs('hi there')
  root.end()
  t.equal(ended.length, 1)

  const s = serializeTrace(ended[0])
  t.match(s.info.trace_id, /^tr-[0-9a-f]{32}$/)
  t.equal(s.info.client_request_id, 'req-1')
  t.equal(s.info.state, 'OK')
  t.equal(s.info.request_preview, '{"message":"hello"}')
  t.equal(s.info.response_preview, 'hi there', 'a string output previews as itself')
  t.match(s.info.execution_duration, /^\d+\.\d{9}s$/)
  t.same(s.info.tags, { route: '/chat', 'mlflow.traceName': 'POST /chat' }, 'the trace is named after its root')
  t.equal(s.info.trace_metadata['mlflow.trace_schema.version'], '3')
  t.equal(s.info.trace_metadata['mlflow.trace.user'], 'alice@example.com')
  t.same(JSON.parse(s.info.trace_metadata['mlflow.trace.tokenUsage']), { input_tokens: 3, output_tokens: 4, total_tokens: 7 })

  t.match(s.spansJson, /"start_time_unix_nano":\d{19},/, 'nanoseconds are exact JSON integers')
  const doc = JSON.parse(s.spansJson) as { spans: Array<Record<string, any>> }
  t.equal(doc.spans.length, 3)
  const [r, l] = doc.spans
  t.equal(r.trace_id, hexToBase64(s.info.trace_id.slice(3)))
  t.equal(r.parent_span_id, '')
  t.equal(l.parent_span_id, r.span_id)
  for (const span of doc.spans) t.equal(span.attributes['mlflow.traceRequestId'], JSON.stringify(s.info.trace_id))
  t.equal(r.attributes['mlflow.spanType'], '"AGENT"', 'attribute values are JSON text')
  t.equal(r.attributes['mlflow.spanInputs'], '{"message":"hello"}')
  t.equal(l.attributes['gen_ai.usage.input_tokens'], '3')
  t.same(r.status, { message: '', code: 'STATUS_CODE_OK' })

  // Size stats: span sizes are their JSON's length (here ASCII: its bytes), percentiles as MLflow's.
  const stats = JSON.parse(s.info.trace_metadata['mlflow.trace.sizeStats'])
  t.same(Object.keys(stats), ['total_size_bytes', 'num_spans', 'max', 'p25', 'p50', 'p75'], 'TraceSizeStatsKey\'s fields')
  t.equal(stats.num_spans, 3)
  const { max, p50: median } = stats
  const smallest = s.spansJson.length - '{"spans":[]}'.length - 2 - max - median
  t.ok(smallest <= median && median <= max)
  t.equal(stats.p25, Math.trunc((smallest + median) / 2))
  t.equal(stats.p75, Math.trunc((median + max) / 2))
  t.ok(stats.total_size_bytes > s.spansJson.length + JSON.stringify(s.info.tags).length, 'the total counts the spans and the TraceInfo')
  t.equal(s.info.trace_metadata['mlflow.trace.sizeBytes'], String(stats.total_size_bytes), 'sizeBytes is the total')
})

t.test('the trace name is the root\'s final name; a tag set by the user wins; size stats are always computed', async t => {
  const { tracer, ended } = collect()
  const renamed = tracer.startSpan('GET (no route)')
  renamed.updateName('GET /renamed')
  renamed.end()
  const named = tracer.startSpan('POST /chat')
  named.trace.setTags({ 'mlflow.traceName': 'support chat' })
  named.trace.setMetadata({ 'mlflow.trace.sizeStats': '{"num_spans":99}', 'mlflow.trace.sizeBytes': '1' })
  named.end()
  const [first, second] = ended.map(r => serializeTrace(r))
  t.equal(first.info.tags['mlflow.traceName'], 'GET /renamed')
  t.equal(second.info.tags['mlflow.traceName'], 'support chat')
  const stats = JSON.parse(second.info.trace_metadata['mlflow.trace.sizeStats'])
  t.equal(stats.num_spans, 1, 'MLflow waits for num_spans spans: the count is never taken from the user')
  t.equal(stats.max, second.spansJson.length - '{"spans":[]}'.length, 'one span: it is the whole document but its brackets')
  t.same([stats.p25, stats.p50, stats.p75], [stats.max, stats.max, stats.max])
  t.not(second.info.trace_metadata['mlflow.trace.sizeBytes'], '1')
})

t.test('errors: ERROR status makes an ERROR trace; exceptions become events', async t => {
  const { tracer, ended } = collect()
  const root = tracer.startSpan('POST /fail')
  root.recordException(new TypeError('nope'))
  root.setStatus({ code: SpanStatusCode.ERROR, message: 'nope' })
  root.end()
  const s = serializeTrace(ended[0])
  t.equal(s.info.state, 'ERROR')
  const span = JSON.parse(s.spansJson).spans[0]
  t.same(span.status, { message: 'nope', code: 'STATUS_CODE_ERROR' })
  t.equal(span.events[0].name, 'exception')
  t.equal(span.events[0].attributes['exception.type'], 'TypeError')
  t.equal(span.events[0].attributes['exception.message'], 'nope')
  t.match(span.events[0].time_unix_nano, Number)
})

t.test('startActiveSpan nests OTel-style, across awaits', async t => {
  const { tracer, ended } = collect()
  await tracer.startActiveSpan('root', async root => {
    await new Promise(resolve => setImmediate(resolve))
    await tracer.startActiveSpan('child', async child => {
      t.equal(trace.getActiveSpan(), child)
      child.end()
    })
    root.end()
  })
  const doc = JSON.parse(serializeTrace(ended[0]).spansJson)
  t.equal(doc.spans[1].parent_span_id, doc.spans[0].span_id)
})

t.test('children still open when the root ends are closed with it; later spans are counted', async t => {
  const { tracer, ended } = collect()
  const root = tracer.startSpan('root')
  const open = tracer.startSpan('open', {}, trace.setSpan(context.active(), root))
  root.end()
  t.equal(ended.length, 1)
  t.equal(open.ended, true)
  t.equal(open.endNs, root.endNs)
  open.end()
  t.equal(ended.length, 1, 'ending it again does nothing')
  tracer.startSpan('late', {}, trace.setSpan(context.active(), root)).end()
  t.equal(tracer.lateSpans, 1)
  t.throws(() => root.trace.setMetadata({ a: 'b' }), { code: 'FST_MLFLOW_TRACE_FINALIZED' })
})

t.test('a remote parent (W3C traceparent): OTel keeps its trace, MLflow gets a trace of its own', async t => {
  const { tracer, ended } = collect()
  const remote = trace.wrapSpanContext({ traceId: 'ad9a3d0c8c2cfba776b5e8c80970f883', spanId: '0ce0f6aa367a66b5', traceFlags: 1, isRemote: true })
  const root = tracer.startSpan('server', {}, trace.setSpan(context.active(), remote))
  const child = tracer.startSpan('child', {}, trace.setSpan(context.active(), root))
  t.equal(root.spanContext().traceId, 'ad9a3d0c8c2cfba776b5e8c80970f883', 'propagation downstream continues the caller\'s trace')
  t.equal(child.spanContext().traceId, 'ad9a3d0c8c2cfba776b5e8c80970f883')
  child.end()
  root.end()
  const s = serializeTrace(ended[0])
  t.not(s.info.trace_id, 'tr-ad9a3d0c8c2cfba776b5e8c80970f883', 'never the caller\'s id: StartTraceV3 would overwrite its trace')
  t.match(s.info.trace_id, /^tr-[0-9a-f]{32}$/)
  t.match(s.info.trace_metadata, { 'w3c.parent_trace_id': 'ad9a3d0c8c2cfba776b5e8c80970f883', 'w3c.parent_span_id': '0ce0f6aa367a66b5' })
  const [r, c] = JSON.parse(s.spansJson).spans
  t.equal(r.parent_span_id, '', 'the root has no parent, so MLflow finds it as the root')
  t.equal(r.trace_id, hexToBase64(s.info.trace_id.slice(3)))
  t.equal(c.parent_span_id, r.span_id)
})

t.test('limits: previews, metadata and tag values are cut to what MLflow guarantees', async t => {
  const { tracer, ended } = collect()
  const root = tracer.startSpan('root')
  root.setInputs('😀'.repeat(600)).setOutputs({ big: 'x'.repeat(5000) })
  root.trace.setMetadata({ long: 'm'.repeat(300) })
  root.trace.setTags({ long: 't'.repeat(5000) })
  root.end()
  const { info } = serializeTrace(ended[0])
  t.ok((info.request_preview as string).length <= 1000)
  t.notMatch(info.request_preview as string, /[\ud800-\udbff]\.\.\.$/, 'never cut inside a surrogate pair')
  t.equal(info.response_preview?.length, 1000)
  t.equal(info.trace_metadata.long.length, 250)
  t.equal(info.tags.long.length, 4096)
})

t.test('text JSON must escape survives the span document and the metadata', async t => {
  const { tracer, ended } = collect()
  const odd = ['say "hi"', 'back\\slash', 'line\nbreak', 'bell\u0007', 'lone \ud800 surrogate', 'emoji 😀', 'sep\u2028', '']
  const shared = { deployment: 'a "b"' }
  for (let i = 0; i < 2; i++) {
    const root = tracer.startSpan('GET "/x"\n')
    root.trace.sharedMetadata = shared
    odd.forEach((value, n) => root.setAttribute(`k${n} "${value}"`, value))
    root.setAttributes({ negZero: -0, big: 1e21, nan: NaN, pi: 3.14 })
    root.setStatus({ code: SpanStatusCode.ERROR, message: odd[0] })
    root.trace.setMetadata({ own: odd[2], ...(i === 1 ? { deployment: 'overridden' } : {}) })
    root.end()
  }
  const [first, second] = ended.map(r => serializeTrace(r))
  const span = JSON.parse(first.spansJson).spans[0]
  t.equal(span.name, 'GET "/x"\n')
  odd.forEach((value, n) => t.equal(span.attributes[`k${n} "${value}"`], JSON.stringify(value), `odd text ${n}`))
  t.match(span.attributes, { negZero: '0', big: '1e+21', nan: 'null', pi: '3.14' })
  t.equal(span.status.message, odd[0])
  t.same(withoutSizes(first.info.trace_metadata), { 'mlflow.trace_schema.version': '3', deployment: 'a "b"', own: odd[2] })
  t.same(withoutSizes(second.info.trace_metadata), { 'mlflow.trace_schema.version': '3', deployment: 'overridden', own: odd[2] }, 'the trace\'s own metadata wins')
  first.info.trace_metadata.deployment = 'changed by a sink'
  t.equal(serializeTrace(ended[0]).info.trace_metadata.deployment, 'a "b"', 'each trace gets its own metadata object')
})

t.test('values JSON cannot encode do not break serialization', async t => {
  const { tracer, ended } = collect()
  const root = tracer.startSpan('root')
  const cyclic: Record<string, unknown> = { n: 1n }
  cyclic.self = cyclic
  root.setInputs(cyclic)
  root.end()
  const span = JSON.parse(serializeTrace(ended[0]).spansJson).spans[0]
  t.same(JSON.parse(span.attributes['mlflow.spanInputs']), { n: '1', self: '[Circular]' })
})
