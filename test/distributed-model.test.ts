// distributedTracing without a server: what the tracer makes of a remote parent in each mode, what a
// joined trace keeps on its root, the propagation headers, and the option's validation.
import t from 'tap'
import Fastify from 'fastify'
import { context, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import fastifyMlflowTracing, { FST_MLFLOW_INVALID_OPTION, MemorySink, MlflowTracing, type DistributedTracing, type FastifyMlflowTracingOptions } from '../plugin/index'
import { MlflowTracer } from '../plugin/trace/tracer'
import type { TraceRecord } from '../plugin/trace/trace-record'
import { buildApp, parseTrace, silentLogger, withEnv } from './helpers/plugin-app'

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

const UPSTREAM_TRACE = '0af7651916cd43dd8448eb211c80319c'
const UPSTREAM_SPAN = 'b7ad6b7169203331'
const TRACEPARENT = `00-${UPSTREAM_TRACE}-${UPSTREAM_SPAN}-01`

function collect (mode?: DistributedTracing): { tracer: MlflowTracer, ended: TraceRecord[] } {
  const ended: TraceRecord[] = []
  return { tracer: new MlflowTracer(r => ended.push(r), mode), ended }
}

function remoteParent (isRemote = true): ReturnType<typeof context.active> {
  return trace.setSpanContext(context.active(), { traceId: UPSTREAM_TRACE, spanId: UPSTREAM_SPAN, traceFlags: 1, isRemote })
}

function tracing (mode?: DistributedTracing): { tracing: MlflowTracing, sink: MemorySink } {
  const sink = new MemorySink()
  return { tracing: new MlflowTracing({ sink, logger: silentLogger, distributedTracing: mode }), sink }
}

t.test('tracer: separate is the default, and a remote parent gets an MLflow trace of its own', async t => {
  for (const mode of [undefined, 'separate'] as const) {
    const { tracer } = collect(mode)
    const root = tracer.startSpan('server', {}, remoteParent())
    t.equal(tracer.distributed, 'separate')
    t.equal(root.trace.joined, false)
    t.not(root.trace.traceIdHex, UPSTREAM_TRACE)
    t.equal(root.trace.otelTraceId, UPSTREAM_TRACE, 'OTel still sees the caller\'s trace')
    t.match(root.trace.metadata, { 'w3c.parent_trace_id': UPSTREAM_TRACE, 'w3c.parent_span_id': UPSTREAM_SPAN })
  }
})

t.test('tracer: join puts a remote parent\'s spans in the caller\'s MLflow trace, under the caller\'s span', async t => {
  const { tracer, ended } = collect('join')
  const root = tracer.startSpan('server', {}, remoteParent())
  const child = tracer.startSpan('child', {}, trace.setSpan(context.active(), root))
  const record = root.trace
  t.equal(record.id, `tr-${UPSTREAM_TRACE}`)
  t.equal(record.joined, true)
  t.equal(root.parentSpanId, UPSTREAM_SPAN, 'the root hangs under the caller\'s span')
  t.equal(child.trace, record)
  t.equal(child.parentSpanId, root.spanId)
  t.equal(child.spanContext().traceId, UPSTREAM_TRACE)
  t.same(record.metadata, {}, 'no w3c.parent_* metadata: the parent is in the trace itself')
  child.end()
  root.end()
  t.equal(ended.length, 1)

  // An orchestrator calling this service twice under one span: two records, one MLflow trace.
  const again = tracer.startSpan('server', {}, remoteParent())
  t.not(again.trace, record)
  t.equal(again.trace.id, record.id)
})

t.test('tracer: join only follows a parent from another process', async t => {
  const { tracer } = collect('join')
  const local = tracer.startSpan('under another SDK\'s span', {}, remoteParent(false))
  t.equal(local.trace.joined, false, 'an in-process span of another SDK is not in MLflow')
  t.not(local.trace.traceIdHex, UPSTREAM_TRACE)
  t.equal(local.trace.metadata['w3c.parent_trace_id'], UPSTREAM_TRACE)
  const fresh = tracer.startSpan('no parent')
  t.equal(fresh.trace.joined, false)
  t.equal(fresh.trace.otelTraceId, fresh.trace.traceIdHex)
  const forcedRoot = tracer.startSpan('root: true', { root: true }, remoteParent())
  t.equal(forcedRoot.trace.joined, false)
  t.equal(forcedRoot.parentSpanId, '')
})

t.test('a joined trace keeps on its root what its TraceInfo would have held', async t => {
  const { tracer, ended } = collect('join')
  const root = tracer.startSpan('server', {}, remoteParent())
  root.setAttribute('team', 'set on the span')
  const record = root.trace
  record.sharedMetadata = { agent_version: '1.2.3', 'mlflow.source.type': 'production', team: 'shared' }
  record.setMetadata({ 'mlflow.trace.user': 'alice@example.com', 'mlflow.trace.session': 'sess-1', user_source: 'header', agent_version: 'own' })
  record.setTags({ route: '/chat' })
  record.clientRequestId = 'req-1'
  root.end()
  t.match(ended[0].root.attributes, {
    'user.id': 'alice@example.com',
    'session.id': 'sess-1',
    client_request_id: 'req-1',
    'mlflow.trace.user': 'alice@example.com',
    user_source: 'header',
    agent_version: 'own',
    'mlflow.source.type': 'production',
    'mlflow.traceTag.route': '/chat',
    team: 'set on the span'
  }, 'the trace\'s own metadata wins over the shared, and the span\'s attributes over both')

  const separate = collect('separate')
  const own = separate.tracer.startSpan('server', {}, remoteParent())
  own.trace.setMetadata({ 'mlflow.trace.user': 'alice@example.com' })
  own.trace.clientRequestId = 'req-2'
  own.end()
  t.same(Object.keys(own.attributes), [], 'a trace with its own TraceInfo keeps its root as it was')
})

t.test('plugin in join mode: the response header and request.mlflow.traceId name the caller\'s trace', async t => {
  const { tracing: joined, sink } = tracing('join')
  const { app } = buildApp(t, { tracing: joined, trustForwardedIdentity: true })
  const seen: Array<string | undefined> = []
  app.get('/', async req => {
    seen.push(req.mlflow.traceId)
    return 'ok'
  })
  const res = await app.inject({ url: '/', headers: { traceparent: TRACEPARENT, 'x-request-id': 'req-9', 'x-session-id': 'sess-9', 'x-forwarded-email': 'bob@example.com' } })
  const plain = await app.inject({ url: '/' })
  await joined.flush(2000)
  const [a, b] = sink.traces.map(parseTrace)
  t.equal(res.headers['x-mlflow-trace-id'], `tr-${UPSTREAM_TRACE}`)
  t.equal(seen[0], `tr-${UPSTREAM_TRACE}`)
  t.equal(a.raw.traceId, `tr-${UPSTREAM_TRACE}`)
  t.match(a.root.attributes, { 'user.id': 'bob@example.com', 'session.id': 'sess-9', client_request_id: 'req-9', user_source: 'x-forwarded-email' })
  t.not(plain.headers['x-mlflow-trace-id'], `tr-${UPSTREAM_TRACE}`, 'a request without traceparent has its own trace')
  t.equal(b.raw.traceId, plain.headers['x-mlflow-trace-id'])
  t.notOk('client_request_id' in b.root.attributes)
})

t.test('propagationHeaders: the MLflow trace and the active span of the request', async t => {
  for (const mode of ['separate', 'join'] as const) {
    t.test(mode, async t => {
      const { app } = buildApp(t, { tracing: tracing(mode).tracing })
      app.get('/', async req => {
        const atRoot = req.mlflow.propagationHeaders()
        const inSpan = await req.mlflow.span('call B', {}, async span => ({ headers: req.mlflow.propagationHeaders(), spanId: span.spanId }))
        const lost = await new Promise(resolve => context.with(context.active(), () => setImmediate(() => resolve(req.mlflow.propagationHeaders()))))
        const root = trace.getSpan(req.mlflow.context)?.spanContext().spanId
        return { atRoot, inSpan, lost, root, traceId: req.mlflow.traceId }
      })
      for (const headers of [{}, { traceparent: TRACEPARENT }]) {
        const body = (await app.inject({ url: '/', headers })).json()
        const hex = body.traceId.slice(3)
        t.same(body.atRoot, { traceparent: `00-${hex}-${body.root}-01` }, 'outside spans, the root')
        t.same(body.inSpan.headers, { traceparent: `00-${hex}-${body.inSpan.spanId}-01` }, 'inside request.mlflow.span, that span')
        t.equal(body.lost.traceparent.split('-')[1], hex)
        if (headers.traceparent === undefined) continue
        // Under a caller in separate mode the spans report the caller's W3C trace to OTel, but the
        // callee must join this MLflow trace, where the span named in the header lives.
        t.equal(hex, mode === 'join' ? UPSTREAM_TRACE : body.traceId.slice(3), `${mode}: the header names this request's MLflow trace`)
        if (mode === 'separate') t.not(hex, UPSTREAM_TRACE)
      }
    })
  }
})

t.test('propagationHeaders: a request that is not traced sends none', async t => {
  const { app, traces } = buildApp(t)
  app.get('/off', { config: { mlflow: false } }, async req => {
    const headers = req.mlflow.propagationHeaders()
    headers.extra = 'mine'
    return { headers, again: req.mlflow.propagationHeaders() }
  })
  t.same((await app.inject('/off')).json(), { headers: { extra: 'mine' }, again: {} }, 'a fresh object each call')
  t.equal((await traces()).length, 0)
})

t.test('distributedTracing: the option, else MLFLOW_DISTRIBUTED_TRACING, else separate', async t => {
  withEnv(t, { MLFLOW_DISTRIBUTED_TRACING: ' Join ' })
  t.equal(tracing().tracing.tracer.distributed, 'join', 'the environment variable, trimmed, any case')
  t.equal(tracing('separate').tracing.tracer.distributed, 'separate', 'the option wins')
  process.env.MLFLOW_DISTRIBUTED_TRACING = ''
  t.equal(tracing().tracing.tracer.distributed, 'separate', 'empty is unset')
})

async function register (opts: Record<string, unknown>): Promise<unknown> {
  const app = Fastify()
  const err = await app.register(fastifyMlflowTracing, opts as FastifyMlflowTracingOptions).ready().then(() => undefined, (e: unknown) => e)
  await app.close().catch(() => {})
  return err
}

t.test('distributedTracing: bad values fail registration with FST_MLFLOW_INVALID_OPTION naming it', async t => {
  for (const value of ['merge', 'JOIN', 1, true]) {
    const err = await register({ tracing: tracing().tracing, distributedTracing: value })
    t.match(err, { code: 'FST_MLFLOW_INVALID_OPTION', message: /^Invalid option distributedTracing \(MLFLOW_DISTRIBUTED_TRACING\): expected one of separate, join, got / }, String(value))
    t.type(err, TypeError)
    t.type(err, FST_MLFLOW_INVALID_OPTION)
  }
  t.match(await register({ tracing: tracing().tracing, distributedTracing: 'join' }), {
    code: 'FST_MLFLOW_INVALID_OPTION', message: /distributedTracing: the MlflowTracing given as `tracing` is in 'separate' mode/
  }, 'a mode the given tracing does not have')
  t.equal(await register({ tracing: tracing('join').tracing, distributedTracing: 'join' }), undefined, 'the same mode is fine')
})

t.test('distributedTracing: a bad MLFLOW_DISTRIBUTED_TRACING fails registration and the trace client', async t => {
  const given = tracing().tracing
  withEnv(t, { MLFLOW_DISTRIBUTED_TRACING: 'yes' })
  t.match(await register({ tracing: given }), { code: 'FST_MLFLOW_INVALID_OPTION', message: /MLFLOW_DISTRIBUTED_TRACING.*got "yes"/ })
  t.throws(() => new MlflowTracing({ sink: new MemorySink() }), { code: 'FST_MLFLOW_INVALID_OPTION' }, 'the trace client on its own too')
})
