import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { decodeTrace, encodeTrace } from '../plugin/export/spool/codec'
import { DiskSpool } from '../plugin/export/spool/disk-spool'
import { destinationDir, resolveSpool } from '../plugin/export/spool/options'
import { encodeOtlpSpans } from '../plugin/trace/otlp'
import { serializeTrace } from '../plugin/trace/serialize'
import type { TraceRecord } from '../plugin/trace/trace-record'
import { MlflowTracer } from '../plugin/trace/tracer'
import { recordingLogger } from './helpers/fake-server'

function tracer (distributed: 'separate' | 'join' = 'separate'): { tracer: MlflowTracer, ended: TraceRecord[] } {
  const ended: TraceRecord[] = []
  return { tracer: new MlflowTracer(r => ended.push(r), distributed), ended }
}

/** A trace with a bit of everything a request's trace carries. */
function richTrace (): TraceRecord {
  const { tracer: tr, ended } = tracer()
  const root = tr.startSpan('POST /chat', { kind: SpanKind.SERVER })
  root.trace.setMetadata({ 'mlflow.trace.user': 'ana', 'mlflow.trace.session': 's-1' })
  root.trace.sharedMetadata = Object.freeze({ 'app.version': '1.2.3' })
  root.trace.setTags({ route: '/chat' })
  root.trace.clientRequestId = 'req-7'
  root.trace.requestPreview = '{"message":"hi"}'
  root.setInputs({ message: 'hi' }).setAttribute('http.status_code', 200).setAttribute('ok', true)
  root.setAttribute('nan', Number.NaN).setAttribute('text', 'line\n"quoted"').setAttribute('list', [1, 2])
  const llm = tr.startSpan('llm', {}, trace.setSpan(context.active(), root))
  llm.setSpanType('LLM').setTokenUsage({ input_tokens: 3, output_tokens: 5 })
  llm.addEvent('first token', { index: 0 })
  llm.recordException(new Error('retry once'))
  llm.setStatus({ code: SpanStatusCode.ERROR, message: 'model refused' })
  llm.end()
  root.end()
  return ended[0]
}

function spoolDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function newSpool (t: Test, dir: string, maxBytes = 64 * 1024 * 1024): DiskSpool {
  const spool = new DiskSpool(dir, maxBytes, recordingLogger())
  t.teardown(async () => await spool.close())
  return spool
}

/** A spool of its own on `dir` (closed by the test) holding `n` new traces, and the traces. */
function spoolOf (dir: string, n: number): { spool: DiskSpool, traces: TraceRecord[] } {
  const spool = new DiskSpool(dir, 64 * 1024 * 1024, recordingLogger())
  const traces = simpleTraces(n)
  for (const tr of traces) spool.put(tr, 'destination_down')
  return { spool, traces }
}

function simpleTraces (n: number): TraceRecord[] {
  const { tracer: tr, ended } = tracer()
  for (let i = 0; i < n; i++) tr.startSpan(`t${i}`).end()
  return ended
}

t.test('codec: a trace read back serializes, and OTLP-encodes, exactly as the original', async t => {
  const original = richTrace()
  const line = encodeTrace(original)
  t.notOk(line.includes('\n'), 'one line')
  const back = decodeTrace(line)
  t.equal(back.id, original.id)
  t.equal(back.bytes, original.bytes)
  t.ok(back.finalized)
  t.same(serializeTrace(back).info, serializeTrace(original).info)
  t.equal(serializeTrace(back).spansJson, serializeTrace(original).spansJson)
  t.same(Buffer.from(encodeOtlpSpans([back])), Buffer.from(encodeOtlpSpans([original])))
})

t.test('codec: a joined trace keeps its caller\'s ids and its remote parent', async t => {
  const { tracer: tr, ended } = tracer('join')
  const remote = trace.wrapSpanContext({ traceId: 'ad9a3d0c8c2cfba776b5e8c80970f883', spanId: '0ce0f6aa367a66b5', traceFlags: 1, isRemote: true })
  tr.startSpan('server', {}, trace.setSpan(context.active(), remote)).end()
  const back = decodeTrace(encodeTrace(ended[0]))
  t.ok(back.joined)
  t.equal(back.otelTraceId, ended[0].otelTraceId)
  t.equal(back.root.parentSpanId, '0ce0f6aa367a66b5')
  t.same(Buffer.from(encodeOtlpSpans([back])), Buffer.from(encodeOtlpSpans([ended[0]])))
})

t.test('codec: what is not a spooled trace throws', async t => {
  t.throws(() => decodeTrace('{"v":1,"t":"ab"'))
  t.throws(() => decodeTrace('{"v":99,"t":"ab","s":[{}]}'))
})

t.test('options: a directory or { dir, maxBytes }, or the environment; bad values are coded errors', async t => {
  t.equal(resolveSpool(undefined, {}), undefined)
  t.equal(resolveSpool(undefined, { MLFLOW_TRACING_SPOOL_DIR: ' ' }), undefined)
  t.match(resolveSpool('./s', {}), { dir: /\/s$/, maxBytes: 256 * 1024 * 1024 })
  t.match(resolveSpool(undefined, { MLFLOW_TRACING_SPOOL_DIR: '/tmp/x', MLFLOW_TRACING_SPOOL_MAX_BYTES: '1000000' }), { dir: '/tmp/x', maxBytes: 1_000_000 })
  t.match(resolveSpool({ dir: '/tmp/y', maxBytes: 5000 }, {}), { dir: '/tmp/y', maxBytes: 5000 })
  t.throws(() => resolveSpool({ dir: '' }, {}), { code: 'FST_MLFLOW_INVALID_OPTION', message: /spool/ })
  t.throws(() => resolveSpool({ dir: '/tmp/z', maxBytes: -1 }, {}), { code: 'FST_MLFLOW_INVALID_OPTION', message: /maxBytes/ })
  t.throws(() => resolveSpool(undefined, { MLFLOW_TRACING_SPOOL_DIR: '/tmp/z', MLFLOW_TRACING_SPOOL_MAX_BYTES: 'lots' }), { code: 'FST_MLFLOW_INVALID_OPTION', message: /MLFLOW_TRACING_SPOOL_MAX_BYTES/ })
  t.throws(() => resolveSpool(42 as never, {}), { code: 'FST_MLFLOW_INVALID_OPTION' })
  t.not(destinationDir('/s', { host: 'http://a', experimentId: '1' }), destinationDir('/s', { host: 'http://a', experimentId: '2' }), 'a directory per destination')
})

t.test('put, take, settled: traces come back oldest first, and settled segments go', async t => {
  const dir = spoolDir(t)
  const spool = newSpool(t, dir)
  const traces = simpleTraces(5)
  for (const tr of traces) t.ok(spool.put(tr, 'destination_down'))
  t.equal(spool.pending(), 5)
  const first = await spool.take(3)
  t.same(first.map(r => r.id), traces.slice(0, 3).map(r => r.id))
  const rest = await spool.take(10)
  t.same(rest.map(r => r.id), traces.slice(3).map(r => r.id))
  t.same(await spool.take(10), [], 'nothing is taken twice')
  for (const r of [...first, ...rest]) spool.settled(r)
  t.equal(spool.pending(), 0)
  t.same(readdirSync(dir).filter(f => f !== 'destination.json'), [], 'no segment left')
  t.match(spool.stats(), { spooled: 5, replayed: 5, pending: 0 })
})

t.test('a new process finds what the last one left, taken but not settled included, and not what it settled', async t => {
  const dir = spoolDir(t)
  const { spool: first, traces } = spoolOf(dir, 4)
  const taken = await first.take(2)
  first.settled(taken[0])
  await first.close()
  const next = newSpool(t, dir)
  t.equal(await next.open(), 3)
  t.same((await next.take(10)).map(r => r.id), traces.slice(1).map(r => r.id))
})

t.test('a torn last line (a crash mid-write) is skipped and counted', async t => {
  const dir = spoolDir(t)
  const { spool: first, traces } = spoolOf(dir, 3)
  await first.close()
  const [segment] = readdirSync(dir).filter(f => f.endsWith('.ready'))
  appendFileSync(join(dir, segment), encodeTrace(simpleTraces(1)[0]).slice(0, 40))
  const next = newSpool(t, dir)
  t.equal(await next.open(), 3)
  t.same((await next.take(10)).map(r => r.id), traces.map(r => r.id))
  t.equal(next.stats().dropped.torn, 1)
})

t.test('a segment of a dead process is taken over; one a live process writes is not', async t => {
  const dir = spoolDir(t)
  const traces = simpleTraces(2)
  const writer = newSpool(t, dir)
  writer.put(traces[0], 'destination_down')
  // A crashed writer: its active segment under a pid that no longer runs.
  const dead = readdirSync(dir).find(f => f.endsWith('.active')) as string
  writeFileSync(join(dir, dead.replace(/-\d+_/, '-999999_')), encodeTrace(traces[1]) + '\n')
  const other = newSpool(t, dir)
  await other.open()
  const taken = await other.take(10)
  t.same(taken.map(r => r.id), [traces[1].id], 'the dead one\'s, not the live writer\'s')
  t.same((await writer.take(10)).map(r => r.id), [traces[0].id], 'the writer replays its own')
})

t.test('two spools on one directory never take the same trace', async t => {
  const dir = spoolDir(t)
  const a = newSpool(t, dir, 64 * 1024 * 1024)
  const traces = simpleTraces(3000)
  for (const tr of traces) a.put(tr, 'queue_full')
  await a.close()
  const b = newSpool(t, dir)
  const c = newSpool(t, dir)
  const seen: string[] = []
  for (;;) {
    const [x, y] = await Promise.all([b.take(50), c.take(50)])
    if (x.length + y.length === 0) break
    for (const r of [...x, ...y]) seen.push(r.id)
    for (const r of x) b.settled(r)
    for (const r of y) c.settled(r)
  }
  t.equal(seen.length, 3000)
  t.equal(new Set(seen).size, 3000, 'none twice')
})

t.test('past maxBytes the oldest segments are evicted, counted', async t => {
  const dir = spoolDir(t)
  const spool = newSpool(t, dir, 40_000)
  const traces = simpleTraces(400)
  for (const tr of traces) spool.put(tr, 'destination_down')
  const { evicted } = spool.stats().dropped
  t.ok(evicted > 0, `${evicted} evicted`)
  const bytes = readdirSync(dir).filter(f => f !== 'destination.json').reduce((n, f) => n + readFileSync(join(dir, f)).length, 0)
  t.ok(bytes <= 40_000, `${bytes} bytes on disk`)
  const left = await spool.take(1000)
  t.equal(left.length + evicted, 400, 'every trace is either kept or counted')
  t.equal(left[left.length - 1].id, traces[399].id, 'the newest are kept')
})

t.test('an unwritable directory: put refuses, one warning, counted, and nothing throws', async t => {
  const root = spoolDir(t)
  // Root writes into a read-only mode directory, so as root the spool goes under a regular file instead.
  const dir = join(root, 'read-only', 'dest')
  if (process.getuid?.() === 0) {
    writeFileSync(join(root, 'read-only'), '')
  } else {
    mkdirSync(join(root, 'read-only'), { mode: 0o500 })
  }
  const logger = recordingLogger()
  const spool = new DiskSpool(dir, 1024 * 1024, logger)
  t.teardown(async () => await spool.close())
  t.equal(await spool.open(), 0)
  for (const tr of simpleTraces(3)) t.equal(spool.put(tr, 'destination_down'), false)
  t.equal(spool.stats().refused, 4, 'the failed open, then each put')
  t.equal(logger.calls.warn.length, 1)
  t.match(logger.calls.warn[0].msg, /not writable/)
})

t.test('a trace handed back while taken (shutdown mid-replay) is kept once', async t => {
  const dir = spoolDir(t)
  const { spool, traces } = spoolOf(dir, 2)
  const taken = await spool.take(2)
  spool.put(taken[0], 'shutdown')
  await spool.close()
  const next = newSpool(t, dir)
  t.equal(await next.open(), 2)
  t.same((await next.take(10)).map(r => r.id).sort(), traces.map(r => r.id).sort())
})
