// The acceptance test, end to end: the plugin in a Fastify app served over real HTTP,
// exporting to a real MLflow server, and what MLflow's own Python client then finds and reads.
import t, { type Test } from 'tap'
import { randomBytes, randomUUID } from 'node:crypto'
import type { RequestTracingOptions } from '../plugin/index'
import { forEachAdapter, type Adapter, type NeutralApp } from './helpers/adapters'
import { byName, realMlflow, type RealMlflow } from './helpers/mlflow'

const DEPLOYMENT = { APP_ENVIRONMENT: 'production', AGENT_VERSION: '1.2.3', DEPLOYMENT_ID: `deploy-${randomUUID()}` }
const QUESTION = { message: 'What is MLflow?' }
const ANSWER = 'An open source platform for the machine learning lifecycle'

interface Served {
  url: string
  experimentId: string
  /** Closes the app (which flushes its traces) and returns its stats. */
  close: () => Promise<ReturnType<NeutralApp['stats']>>
}

/** The agent the issue describes: a tool call, then an LLM call, behind POST /chat. */
async function serve (t: Test, adapter: Adapter, server: RealMlflow, opts: RequestTracingOptions): Promise<Served> {
  // The deployment metadata is read from the environment when the plugin registers.
  const saved = Object.fromEntries(Object.keys(DEPLOYMENT).map(k => [k, process.env[k]]))
  Object.assign(process.env, DEPLOYMENT)
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  })

  const app = adapter.build(t, { trackingUri: server.uri, experimentName: `e2e-${randomUUID()}`, ...opts })
  app.post('/chat', async request => {
    const { message } = request.body as { message: string }
    const weather = await request.mlflow.tool('lookup_weather', { city: 'Paris' }, async () => ({ celsius: 21 }))
    const answer = await request.mlflow.llm({ provider: 'fake', model: 'fake-model', inputs: { messages: [{ role: 'user', content: message }] } }, async span => {
      span.setLlmResponse({
        model: 'fake-model-001', id: 'resp-1', finishReasons: ['stop'], usage: { input_tokens: 12, output_tokens: 30 }, outputs: { content: ANSWER }
      })
      return ANSWER
    })
    return { answer, weather }
  })
  const url = await app.listen()
  const close = async (): Promise<ReturnType<NeutralApp['stats']>> => {
    await app.close()
    return app.stats()
  }
  return { url, close, experimentId: await app.tracing().experimentId() as string }
}

async function chat (url: string, headers: Record<string, string>, body: unknown = QUESTION): Promise<{ status: number, traceId: string, body: any }> {
  const res = await fetch(`${url}/chat`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  return { status: res.status, traceId: res.headers.get('x-mlflow-trace-id') as string, body: await res.json() }
}

const NO_DROPS = { queue_full: 0, too_large: 0, rejected: 0, retries_exhausted: 0, failed: 0, shutdown: 0, serialization_error: 0 }

/** Python: `search(filter)` lists trace ids of the experiment; `read(trace_id)` a trace as plain JSON. */
const PY_HELPERS = (experimentId: string): string => `
import json, mlflow
def search(filter_string):
    return sorted(x.info.trace_id for x in mlflow.search_traces(experiment_ids=[${JSON.stringify(experimentId)}],
        return_type="list", filter_string=filter_string))
def read(trace_id):
    t = mlflow.get_trace(trace_id)
    root = t.data._get_root_span()
    return {
        "trace_id": t.info.trace_id,
        "client_request_id": t.info.client_request_id,
        "state": str(t.info.state),
        "metadata": t.info.trace_metadata,
        "token_usage": t.info.token_usage,
        "request": t.data.request,
        "root": None if root is None else {"name": root.name, "span_id": root.span_id, "parent_id": root.parent_id},
        "spans": [{
            "name": s.name, "span_id": s.span_id, "parent_id": s.parent_id, "span_type": s.span_type,
            "inputs": s.inputs, "outputs": s.outputs,
            "gen_ai": {k: v for k, v in s.attributes.items() if k.startswith("gen_ai.")},
            "token_usage": s.attributes.get("mlflow.chat.tokenUsage"),
        } for s in t.data.spans],
    }
`

forEachAdapter(t, (t, adapter) => {
  t.test('a traced request over real HTTP is found and read back by the MLflow Python client', async t => {
    const server = await realMlflow(t)
    const { url, experimentId, close } = await serve(t, adapter, server, { trustForwardedIdentity: true })
    const session = `session-${randomUUID()}`
    const requestId = `req-${randomUUID()}`
    const res = await chat(url, { 'x-forwarded-email': 'alice@example.com', 'x-session-id': session, 'x-request-id': requestId })
    t.equal(res.status, 200)
    t.same(res.body, { answer: ANSWER, weather: { celsius: 21 } })
    t.match(res.traceId, /^tr-[0-9a-f]{32}$/, 'the response names its trace')
    t.match(await close(), { exported: 1, retried: 0, dropped: NO_DROPS, hookErrors: 0 }, 'closing the app flushed the trace')

    const seen = await server.python(PY_HELPERS(experimentId) + `
print(json.dumps({
    "by_user_and_env": search("metadata.\`mlflow.trace.user\` = 'alice@example.com' AND metadata.\`mlflow.source.type\` = 'production'"),
    "by_session": search("metadata.\`mlflow.trace.session\` = '${session}'"),
    "trace": read(${JSON.stringify(res.traceId)}),
}))
  `)
    t.same(seen.by_user_and_env, [res.traceId], 'user + environment filter finds exactly this trace')
    t.same(seen.by_session, [res.traceId], 'session filter finds it')

    const trace = seen.trace
    t.equal(trace.trace_id, res.traceId)
    t.equal(trace.client_request_id, requestId, 'client_request_id is the X-Request-Id')
    t.match(trace.state, /OK/)
    t.match(trace.metadata, {
      'mlflow.trace.user': 'alice@example.com',
      user_source: 'x-forwarded-email',
      'mlflow.trace.session': session,
      'mlflow.source.type': 'production',
      agent_version: '1.2.3',
      deployment_id: DEPLOYMENT.DEPLOYMENT_ID
    })
    t.match(trace.token_usage, { input_tokens: 12, output_tokens: 30, total_tokens: 42 }, 'trace token usage totals 42')

    const root = byName(trace, 'POST /chat')
    t.same(trace.root, { name: 'POST /chat', span_id: root.span_id, parent_id: null }, 'MLflow sees POST /chat as the root')
    t.equal(root.span_type, 'CHAIN')
    t.same(root.inputs, QUESTION, 'root inputs are the request body')
    t.same(root.outputs, { answer: ANSWER, weather: { celsius: 21 } }, 'root outputs are the response body')
    t.same(JSON.parse(trace.request), QUESTION)

    const tool = byName(trace, 'lookup_weather')
    t.match(tool, { span_type: 'TOOL', parent_id: root.span_id, inputs: { city: 'Paris' }, outputs: { celsius: 21 } })

    const llm = byName(trace, 'chat fake-model')
    t.equal(llm.span_type, 'LLM')
    t.equal(llm.parent_id, root.span_id, 'the LLM span hangs under the root')
    t.same(llm.inputs, { messages: [{ role: 'user', content: QUESTION.message }] })
    t.same(llm.outputs, { content: ANSWER })
    t.same(llm.gen_ai, {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'fake',
      'gen_ai.request.model': 'fake-model',
      'gen_ai.response.model': 'fake-model-001',
      'gen_ai.response.id': 'resp-1',
      'gen_ai.response.finish_reasons': ['stop'],
      'gen_ai.usage.input_tokens': 12,
      'gen_ai.usage.output_tokens': 30,
      'gen_ai.conversation.id': session
    }, 'GenAI semantic-convention attributes, with their types')
    t.same(llm.token_usage, { input_tokens: 12, output_tokens: 30, total_tokens: 42 }, 'mlflow.chat.tokenUsage')
  })

  t.test('an untrusted X-Forwarded-Email is not recorded as the user', async t => {
    const server = await realMlflow(t)
    const { url, experimentId, close } = await serve(t, adapter, server, { trustForwardedIdentity: false })
    const session = `session-${randomUUID()}`
    const res = await chat(url, { 'x-forwarded-email': 'alice@example.com', 'x-session-id': session, 'x-request-id': `req-${randomUUID()}` })
    t.equal(res.status, 200)
    t.match(await close(), { exported: 1, dropped: NO_DROPS })

    const seen = await server.python(PY_HELPERS(experimentId) + `
print(json.dumps({
    "by_session": search("metadata.\`mlflow.trace.session\` = '${session}'"),
    "by_user": search("metadata.\`mlflow.trace.user\` = 'alice@example.com'"),
    "metadata": mlflow.get_trace(${JSON.stringify(res.traceId)}).info.trace_metadata,
}))
  `)
    t.same(seen.by_session, [res.traceId], 'found by session')
    t.same(seen.by_user, [], 'not findable as alice')
    t.notOk('mlflow.trace.user' in seen.metadata, 'no mlflow.trace.user')
    t.notOk('user_source' in seen.metadata, 'no user_source')
    t.equal(seen.metadata['mlflow.source.type'], 'production')
  })

  // A W3C traceparent names another service's span: that span is not in this MLflow trace. MLflow
  // finds a trace's root as the span whose parent_id is None (TraceData._get_root_span; the UI marks
  // isRootSpan on a span without parentId), and `trace.data.request/response`, mlflow.genai.evaluate
  // and the judges' get_root_span all start from that root. And MLflow trace ids must be unique per
  // request: StartTraceV3 with an existing id overwrites that trace's info.

  t.test('requests carrying a traceparent are each their own MLflow trace, with a root MLflow can find', async t => {
    const server = await realMlflow(t)
    const { url, experimentId, close } = await serve(t, adapter, server, { trustForwardedIdentity: true })
    const session = `session-${randomUUID()}`
    const upstreamTrace = randomBytes(16).toString('hex')
    // Two calls made under one upstream trace (an orchestrator calling this agent twice).
    const calls = ['first', 'second'].map(which => ({
      requestId: `req-${which}-${randomUUID()}`,
      body: { message: `${QUESTION.message} (${which})` },
      parentSpan: randomBytes(8).toString('hex')
    }))
    const responses = []
    for (const call of calls) {
      const res = await chat(url, {
        'x-forwarded-email': 'alice@example.com',
        'x-session-id': session,
        'x-request-id': call.requestId,
        traceparent: `00-${upstreamTrace}-${call.parentSpan}-01`
      }, call.body)
      t.equal(res.status, 200)
      responses.push(res)
    }
    t.match(await close(), { exported: 2, dropped: NO_DROPS })

    const ids = responses.map(r => r.traceId)
    const seen = await server.python(PY_HELPERS(experimentId) + `
print(json.dumps({
    "by_session": search("metadata.\`mlflow.trace.session\` = '${session}'"),
    "traces": [read(i) for i in ${JSON.stringify([...new Set(ids)])}],
}))
  `)
    t.comment(`trace ids in the responses: ${ids.join(', ')} (upstream trace ${upstreamTrace})`)
    for (const trace of seen.traces) {
      t.comment(`${trace.trace_id}: client_request_id ${trace.client_request_id}; _get_root_span() ${JSON.stringify(trace.root)}; ` +
        `spans ${JSON.stringify(trace.spans.map((s: any) => [s.name, s.span_id, s.parent_id]))}`)
    }

    t.not(ids[0], ids[1], 'each request has its own MLflow trace id')
    t.same(seen.by_session, [...ids].sort(), 'both requests are in MLflow')
    for (const [i, call] of calls.entries()) {
      const trace = seen.traces.find((x: any) => x.client_request_id === call.requestId)
      t.ok(trace, `the ${i === 0 ? 'first' : 'second'} request's trace is in MLflow`)
      if (trace === undefined) continue
      const root = byName(trace, 'POST /chat')
      t.same(trace.root, { name: 'POST /chat', span_id: root.span_id, parent_id: null },
        'MLflow finds POST /chat as the root (parent_id None), not a span hanging under a missing parent')
      t.same(JSON.parse(trace.request ?? 'null'), call.body, 'trace.data.request is the request body')
      t.equal(byName(trace, 'chat fake-model').parent_id, root.span_id, 'the LLM span hangs under the root')
      t.equal(byName(trace, 'lookup_weather').parent_id, root.span_id, 'the tool span hangs under the root')
    }
  })
})
