// Distributed traces against a real MLflow server, read back with MLflow's Python client: a service
// A calling a service B over real HTTP with request.mlflow.propagationHeaders(), B joining A's trace
// or keeping its own; MLflow's Python SDK as the caller; and what MLflow makes of a joined trace
// whose caller never traced into MLflow, or traced into another experiment.
import t, { type Test } from 'tap'
import { randomBytes, randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyMlflowTracing, { type FastifyMlflowTracingOptions } from '../plugin/index'
import { byName, realMlflow, type RealMlflow } from './helpers/mlflow'
import { listenTraced, type Served } from './helpers/served'

const NO_DROPS = { shutdown: 0, too_large: 0, queue_full: 0, serialization_error: 0, failed: 0, retries_exhausted: 0, rejected: 0 }

async function plugin (server: RealMlflow, experimentName: string, opts: FastifyMlflowTracingOptions): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifyMlflowTracing, { trackingUri: server.uri, experimentName, trustForwardedIdentity: true, ...opts })
  return app
}

/** Service B: POST /answer, with a tool span of its own. */
async function serviceB (t: Test, server: RealMlflow, experimentName: string, opts: FastifyMlflowTracingOptions): Promise<Served> {
  const app = await plugin(server, experimentName, opts)
  app.post('/answer', async request => {
    request.mlflow.setMetadata({ served_by: 'B' })
    request.mlflow.setTags({ team: 'b-team' })
    const facts = await request.mlflow.tool('b_lookup', { q: 'weather' }, async () => ({ celsius: 21 }))
    return { facts, traceId: request.mlflow.traceId }
  })
  return await listenTraced(t, app)
}

/** Service A: POST /ask calls B inside a span, with the propagation headers. */
async function serviceA (t: Test, server: RealMlflow, experimentName: string, b: Served): Promise<Served> {
  const app = await plugin(server, experimentName, {})
  app.post('/ask', async request => {
    return await request.mlflow.span('call B', { type: 'TOOL' }, async span => {
      const res = await fetch(`${b.url}/answer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'req-b', 'x-forwarded-email': 'bob@example.com', ...request.mlflow.propagationHeaders() },
        body: JSON.stringify({ q: 'weather' })
      })
      return { b: await res.json(), bHeader: res.headers.get('x-mlflow-trace-id'), callSpan: span.spanId }
    })
  })
  return await listenTraced(t, app)
}

async function ask (a: Served, headers: Record<string, string> = {}): Promise<{ traceId: string, body: any }> {
  const res = await fetch(`${a.url}/ask`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'req-a', ...headers }, body: JSON.stringify({ q: 'weather?' })
  })
  if (res.status !== 200) throw new Error(`A answered ${res.status}`)
  return { traceId: res.headers.get('x-mlflow-trace-id') as string, body: await res.json() }
}

const PY_READ = `
import json, mlflow
def ids(experiment_id):
    return sorted(x.info.trace_id for x in mlflow.search_traces(locations=[experiment_id], return_type="list"))
def read(trace_id):
    t = mlflow.get_trace(trace_id)
    root = t.data._get_root_span()
    return {
        "trace_id": t.info.trace_id,
        "experiment_id": t.info.experiment_id,
        "client_request_id": t.info.client_request_id,
        "state": str(t.info.state),
        "metadata": t.info.trace_metadata,
        "tags": t.info.tags,
        "root": None if root is None else root.name,
        "spans": [{"name": s.name, "span_id": s.span_id, "parent_id": s.parent_id, "attributes": s.attributes} for s in t.data.spans],
    }
`

t.test('join: A calls B over HTTP; MLflow has one trace with both services\' spans', async t => {
  const server = await realMlflow(t)
  const experiment = `distributed-${randomUUID()}`
  const b = await serviceB(t, server, experiment, { distributedTracing: 'join' })
  const a = await serviceA(t, server, experiment, b)
  const res = await ask(a, { 'x-session-id': 'sess-a' })
  const withUser = await ask(a, { 'x-forwarded-email': 'alice@example.com' })
  t.equal(res.body.bHeader, res.traceId, 'B\'s x-mlflow-trace-id is A\'s trace')
  t.equal(res.body.b.traceId, res.traceId, 'and so is B\'s request.mlflow.traceId')
  // B's spans reach MLflow first, as they would in production (B answers before A ends).
  t.match(await b.close(), { exported: 2, dropped: NO_DROPS })
  t.match(await a.close(), { exported: 2, dropped: NO_DROPS })

  const seen = await server.python(PY_READ + `
print(json.dumps({"ids": ids(${JSON.stringify(a.experimentId)}), "trace": read(${JSON.stringify(res.traceId)}), "with_user": read(${JSON.stringify(withUser.traceId)})}))
`)
  t.comment(JSON.stringify(seen.trace.spans.map((s: any) => [s.name, s.span_id, s.parent_id])))
  t.same(seen.ids, [res.traceId, withUser.traceId].sort(), 'search_traces finds one trace per call of A, not two')
  t.equal(seen.with_user.metadata['mlflow.trace.user'], 'alice@example.com', 'A\'s user wins over B\'s')
  t.equal(byName(seen.with_user, 'POST /answer').attributes['user.id'], 'bob@example.com')
  const trace = seen.trace
  t.same(trace.spans.map((s: any) => s.name).sort(), ['POST /answer', 'POST /ask', 'b_lookup', 'call B'], 'A\'s and B\'s spans')
  t.equal(trace.root, 'POST /ask', 'A\'s root is the trace\'s root')
  t.equal(byName(trace, 'call B').parent_id, byName(trace, 'POST /ask').span_id)
  t.equal(byName(trace, 'POST /answer').parent_id, res.body.callSpan, 'B\'s root hangs under the span of A that made the call')
  t.equal(byName(trace, 'b_lookup').parent_id, byName(trace, 'POST /answer').span_id)
  t.equal(trace.client_request_id, 'req-a', 'the TraceInfo is A\'s')
  t.match(trace.state, /OK/)
  t.equal(trace.metadata['mlflow.trace.session'], 'sess-a')
  t.notOk('w3c.parent_trace_id' in trace.metadata)
  t.notOk('served_by' in trace.metadata, 'B\'s metadata is not TraceInfo metadata')
  t.notOk('team' in trace.tags, 'nor are its tags trace tags')
  t.equal(trace.metadata['mlflow.trace.user'], 'bob@example.com', 'MLflow takes the trace\'s user from B\'s user.id, as A set none')
  t.match(byName(trace, 'POST /answer').attributes, {
    'user.id': 'bob@example.com',
    client_request_id: 'req-b',
    served_by: 'B',
    user_source: 'x-forwarded-email',
    'mlflow.traceTag.team': 'b-team'
  }, 'B\'s own request facts are on its root span')
})

t.test('separate: A calls B over HTTP; two traces, B\'s pointing at A\'s span', async t => {
  const server = await realMlflow(t)
  const experiment = `distributed-${randomUUID()}`
  const b = await serviceB(t, server, experiment, { distributedTracing: 'separate' })
  const a = await serviceA(t, server, experiment, b)
  const res = await ask(a)
  const bTrace = res.body.bHeader as string
  t.not(bTrace, res.traceId)
  t.match(await b.close(), { exported: 1, dropped: NO_DROPS })
  t.match(await a.close(), { exported: 1, dropped: NO_DROPS })

  const seen = await server.python(PY_READ + `
print(json.dumps({"ids": ids(${JSON.stringify(a.experimentId)}), "a": read(${JSON.stringify(res.traceId)}), "b": read(${JSON.stringify(bTrace)})}))
`)
  t.same(seen.ids, [res.traceId, bTrace].sort(), 'two traces')
  t.same(seen.a.spans.map((s: any) => s.name).sort(), ['POST /ask', 'call B'])
  t.same(seen.b.spans.map((s: any) => s.name).sort(), ['POST /answer', 'b_lookup'])
  t.equal(seen.b.root, 'POST /answer', 'B\'s trace has a root of its own')
  t.equal(seen.b.client_request_id, 'req-b')
  t.equal(seen.b.metadata.served_by, 'B')
  t.match(seen.b.metadata, { 'w3c.parent_trace_id': res.traceId.slice(3), 'w3c.parent_span_id': res.body.callSpan },
    'the metadata names A\'s MLflow trace and the span that made the call')
})

t.test('join: MLflow\'s Python SDK as the caller', async t => {
  const server = await realMlflow(t)
  const b = await serviceB(t, server, `distributed-${randomUUID()}`, { distributedTracing: 'join' })
  const called = await server.python(`
import json, urllib.request, mlflow
from mlflow.tracing import get_tracing_context_headers_for_http_request
mlflow.set_experiment(experiment_id=${JSON.stringify(b.experimentId)})
with mlflow.start_span("upstream") as span:
    headers = get_tracing_context_headers_for_http_request()
    req = urllib.request.Request(${JSON.stringify(b.url + '/answer')}, data=b'{}', method="POST",
        headers={**headers, "content-type": "application/json", "x-request-id": "req-b"})
    with urllib.request.urlopen(req) as res:
        answer = json.loads(res.read())
        header = res.headers["x-mlflow-trace-id"]
    trace_id, span_id = span.trace_id, span.span_id
mlflow.flush_trace_async_logging()
print(json.dumps({"headers": headers, "trace_id": trace_id, "span_id": span_id, "answer": answer, "header": header}))
`)
  t.same(Object.keys(called.headers), ['traceparent'], 'the Python helper sends a traceparent only')
  t.equal(called.header, called.trace_id, 'B names the Python trace in its response header')
  t.equal(called.answer.traceId, called.trace_id)
  t.match(await b.close(), { exported: 1, dropped: NO_DROPS })

  const seen = await server.python(PY_READ + `
print(json.dumps({"ids": ids(${JSON.stringify(b.experimentId)}), "trace": read(${JSON.stringify(called.trace_id)})}))
`)
  t.same(seen.ids, [called.trace_id], 'one trace')
  t.same(seen.trace.spans.map((s: any) => s.name).sort(), ['POST /answer', 'b_lookup', 'upstream'])
  t.equal(seen.trace.root, 'upstream')
  t.equal(byName(seen.trace, 'POST /answer').parent_id, called.span_id, 'B\'s root hangs under the Python span')
  t.notOk(seen.trace.client_request_id, 'the TraceInfo is the Python SDK\'s, which has no client request id')
  t.equal(byName(seen.trace, 'POST /answer').attributes.client_request_id, 'req-b')
})

t.test('join: MLflow\'s Python SDK as the callee of this plugin', async t => {
  const server = await realMlflow(t)
  const app = await plugin(server, `distributed-${randomUUID()}`, {})
  const experimentId = await app.mlflowTracing.tracing.experimentId() as string
  // The callee's HTTP handling is beside the point: it gets the headers as a Flask handler would.
  // With its default async logging, MLflow 3.17.2's Python SDK drops a callee's spans: its batch
  // export runs after the context manager has unregistered the remote trace (seen as no span of
  // the callee in any trace). Synchronous logging keeps them.
  app.post('/ask', async request => await request.mlflow.span('call Python', {}, async span => {
    const callee = await server.python(`
import json, mlflow
from mlflow.tracing import set_tracing_context_from_http_request_headers
mlflow.set_experiment(experiment_id=${JSON.stringify(experimentId)})
with set_tracing_context_from_http_request_headers(${JSON.stringify(request.mlflow.propagationHeaders())}):
    with mlflow.start_span("python-callee") as s:
        trace_id = s.trace_id
mlflow.flush_trace_async_logging()
print(json.dumps({"trace_id": trace_id}))
`, { MLFLOW_ENABLE_ASYNC_TRACE_LOGGING: 'false' })
    return { ...callee, callSpan: span.spanId }
  }))
  const a = await listenTraced(t, app)
  const res = await ask(a)
  t.equal(res.body.trace_id, res.traceId, 'the Python span is in this trace')
  t.match(await a.close(), { exported: 1, dropped: NO_DROPS })
  const seen = await server.python(PY_READ + `
print(json.dumps({"ids": ids(${JSON.stringify(experimentId)}), "trace": read(${JSON.stringify(res.traceId)})}))
`)
  t.same(seen.ids, [res.traceId], 'one trace')
  t.same(seen.trace.spans.map((s: any) => s.name).sort(), ['POST /ask', 'call Python', 'python-callee'])
  t.equal(byName(seen.trace, 'python-callee').parent_id, res.body.callSpan)
  t.equal(seen.trace.client_request_id, 'req-a', 'the TraceInfo is this plugin\'s')
})

t.test('join under a caller that never traced into MLflow: spans kept, but no root and no TraceInfo', async t => {
  // Why join is not the default: a gateway's or an OTel-only proxy's traceparent names a trace
  // MLflow has never heard of.
  const server = await realMlflow(t)
  const b = await serviceB(t, server, `distributed-${randomUUID()}`, { distributedTracing: 'join' })
  const gatewayTrace = randomBytes(16).toString('hex')
  const res = await fetch(`${b.url}/answer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': 'req-b', traceparent: `00-${gatewayTrace}-${randomBytes(8).toString('hex')}-01` },
    body: '{}'
  })
  t.equal(res.headers.get('x-mlflow-trace-id'), `tr-${gatewayTrace}`)
  t.match(await b.close(), { exported: 1, dropped: NO_DROPS })
  const seen = await server.python(PY_READ + `
print(json.dumps({"ids": ids(${JSON.stringify(b.experimentId)}), "trace": read("tr-${gatewayTrace}")}))
`)
  t.comment(JSON.stringify({ state: seen.trace.state, metadata: seen.trace.metadata, tags: seen.trace.tags }))
  t.same(seen.ids, [`tr-${gatewayTrace}`], 'MLflow creates the trace from the spans, in B\'s experiment')
  t.same(seen.trace.spans.map((s: any) => s.name).sort(), ['POST /answer', 'b_lookup'])
  t.equal(seen.trace.root, null, 'but it has no root span: B\'s root has a parent MLflow never gets')
  t.match(seen.trace.state, /IN_PROGRESS/, 'and stays IN_PROGRESS, the state coming from a root')
  t.notOk(seen.trace.client_request_id)
  t.notOk('served_by' in seen.trace.metadata)
})

t.test('join across experiments: the joined spans go where the caller\'s trace is', async t => {
  const server = await realMlflow(t)
  const b = await serviceB(t, server, `distributed-b-${randomUUID()}`, { distributedTracing: 'join' })
  const a = await serviceA(t, server, `distributed-a-${randomUUID()}`, b)
  const res = await ask(a)
  t.match(await b.close(), { exported: 1, dropped: NO_DROPS })
  t.match(await a.close(), { exported: 1, dropped: NO_DROPS })
  const seen = await server.python(PY_READ + `
print(json.dumps({"a": ids(${JSON.stringify(a.experimentId)}), "b": ids(${JSON.stringify(b.experimentId)}), "trace": read(${JSON.stringify(res.traceId)})}))
`)
  t.comment(JSON.stringify({ a: seen.a, b: seen.b, experiment: seen.trace.experiment_id }))
  t.same(seen.a, [res.traceId], 'the trace is in A\'s experiment')
  t.same(seen.b, [], 'B\'s experiment shows nothing of it')
  t.equal(seen.trace.experiment_id, a.experimentId)
  t.same(seen.trace.spans.map((s: any) => s.name).sort(), ['POST /answer', 'POST /ask', 'b_lookup', 'call B'])
})
