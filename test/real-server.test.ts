import t from 'tap'
import { context, trace, SpanStatusCode } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { randomUUID } from 'node:crypto'
import { MlflowTracing, findTraces } from '../plugin/index'
import { realMlflow } from './helpers/mlflow'

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

const quiet = { info () {}, warn () {}, error () {} }

/** A tracing client on a fresh experiment of the real server. */
async function client (uri: string): Promise<{ tracing: MlflowTracing, experimentId: string }> {
  const tracing = new MlflowTracing({ trackingUri: uri, experimentName: `test-${randomUUID()}`, logger: quiet }, {})
  await tracing.start()
  return { tracing, experimentId: await tracing.experimentId() as string }
}

/** An LLM span's GenAI attributes, of several types (strings, integers, a list). */
function genAiAttributes (session: string): Record<string, string | number | string[]> {
  return {
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': 'fake',
    'gen_ai.request.model': 'fake-model',
    'gen_ai.response.model': 'fake-model-001',
    'gen_ai.usage.input_tokens': 12,
    'gen_ai.usage.output_tokens': 30,
    'gen_ai.response.finish_reasons': ['stop'],
    'gen_ai.conversation.id': session
  }
}

/** The agent-shaped trace the issue describes: root, retrieval, an LLM call, a failing tool. */
function agentTrace (tracing: MlflowTracing, user: string, session: string, requestId: string): string {
  const root = tracing.tracer.startSpan('POST /chat')
  root.setSpanType('AGENT').setInputs({ message: 'What is MLflow?' })
  root.trace.setMetadata({
    'mlflow.trace.user': user,
    'mlflow.trace.session': session,
    'mlflow.source.type': 'production',
    agent_version: '1.2.3'
  })
  root.trace.setTags({ route: '/chat' })
  root.trace.clientRequestId = requestId
  const under = (span: typeof root): ReturnType<typeof context.active> => trace.setSpan(context.active(), span)

  const retrieve = tracing.tracer.startSpan('retrieve', {}, under(root))
  retrieve.setSpanType('RETRIEVER').setInputs({ query: 'mlflow' }).setOutputs([{ doc: 'MLflow is a platform' }])
  retrieve.end()

  const llm = tracing.tracer.startSpan('chat fake-model', {}, under(root))
  llm.setSpanType('LLM').setInputs({ messages: [{ role: 'user', content: 'What is MLflow?' }] })
  llm.setAttributes(genAiAttributes(session))
  llm.setTokenUsage({ input_tokens: 12, output_tokens: 30 })
  llm.setOutputs({ content: 'An open source platform' })
  llm.end()

  const tool = tracing.tracer.startSpan('lookup_weather', {}, under(root))
  tool.setSpanType('TOOL')
  tool.recordException(new Error('upstream timed out'))
  tool.setStatus({ code: SpanStatusCode.ERROR, message: 'upstream timed out' })
  tool.end()

  root.setOutputs({ answer: 'An open source platform' })
  root.end()
  return root.trace.id
}

t.test('the Python client finds our trace and reads its span tree', async t => {
  const server = await realMlflow(t)
  const { tracing, experimentId } = await client(server.uri)
  const traceId = agentTrace(tracing, 'alice@example.com', 'session-42', 'req-abc')
  agentTrace(tracing, 'bob@example.com', 'session-43', 'req-def')
  t.ok(await tracing.flush(20_000), 'flushed')
  t.match(tracing.stats(), { exported: 2, retried: 0, dropped: { rejected: 0, failed: 0 } })

  const seen = await server.python(`
import json, mlflow
found = mlflow.search_traces(experiment_ids=["${experimentId}"], return_type="list",
  filter_string="metadata.\`mlflow.trace.user\` = 'alice@example.com' AND metadata.\`mlflow.source.type\` = 'production'")
by_session = mlflow.search_traces(experiment_ids=["${experimentId}"], return_type="list",
  filter_string="metadata.\`mlflow.trace.session\` = 'session-42'")
t = mlflow.get_trace("${traceId}")
print(json.dumps({
  "found": [x.info.trace_id for x in found],
  "by_session": [x.info.trace_id for x in by_session],
  "client_request_id": t.info.client_request_id,
  "state": str(t.info.state),
  "metadata": t.info.trace_metadata,
  "tags": t.info.tags,
  "request_preview": t.info.request_preview,
  "token_usage": t.info.token_usage,
  "spans": [{
    "name": s.name, "span_id": s.span_id, "parent_id": s.parent_id, "span_type": s.span_type,
    "inputs": s.inputs, "outputs": s.outputs, "status": str(s.status.status_code),
    "attributes": {k: v for k, v in s.attributes.items() if k.startswith("gen_ai.")},
    "token_usage": s.attributes.get("mlflow.chat.tokenUsage"),
    "events": [{"name": e.name, "attributes": e.attributes} for e in s.events],
  } for s in t.data.spans],
}))
`)
  t.same(seen.found, [traceId], 'user + environment filter returns exactly our trace')
  t.same(seen.by_session, [traceId], 'session filter returns exactly our trace')
  t.equal(seen.client_request_id, 'req-abc')
  t.match(seen.state, /OK/)
  t.match(seen.metadata, { 'mlflow.trace.user': 'alice@example.com', 'mlflow.trace.session': 'session-42', agent_version: '1.2.3' })
  t.equal(seen.tags.route, '/chat')
  t.match(seen.token_usage, { input_tokens: 12, output_tokens: 30, total_tokens: 42 })

  const [root, retrieve, llm, tool] = seen.spans
  t.same(seen.spans.map((s: any) => s.name), ['POST /chat', 'retrieve', 'chat fake-model', 'lookup_weather'])
  t.equal(root.parent_id, null)
  for (const child of [retrieve, llm, tool]) t.equal(child.parent_id, root.span_id)
  t.same(seen.spans.map((s: any) => s.span_type), ['AGENT', 'RETRIEVER', 'LLM', 'TOOL'])
  t.same(root.inputs, { message: 'What is MLflow?' })
  t.same(root.outputs, { answer: 'An open source platform' })
  t.same(retrieve.outputs, [{ doc: 'MLflow is a platform' }])
  t.same(llm.attributes, genAiAttributes('session-42'), 'gen_ai attributes read back with their types')
  t.same(llm.token_usage, { input_tokens: 12, output_tokens: 30, total_tokens: 42 })
  t.match(tool.status, /ERROR/)
  t.equal(tool.events[0].name, 'exception')
  t.equal(tool.events[0].attributes['exception.message'], 'upstream timed out', 'event attributes read back as plain values')
  await tracing.shutdown(5000)
})

t.test('our own read path: trace info, spans, and search by each field', async t => {
  const server = await realMlflow(t)
  const { tracing, experimentId } = await client(server.uri)
  const before = Date.now()
  const alice = agentTrace(tracing, 'alice@example.com', 'session-42', 'req-abc')
  const bob = agentTrace(tracing, 'bob@example.com', 'session-43', 'req-def')
  t.ok(await tracing.flush(20_000))
  const api = tracing.client!

  const info = await api.getTraceInfo(alice)
  t.equal(info.trace_metadata['mlflow.trace.infoFinalized'], 'true', 'the server finalizes the trace on StartTraceV3')
  t.match(info.tags['mlflow.artifactLocation'], `mlflow-artifacts:/${experimentId}/traces/${alice}/artifacts`)
  t.equal(info.request_preview, '{"message":"What is MLflow?"}')
  const spans = await api.getTraceSpans(alice)
  t.equal(spans.spans.length, 4)

  const ids = async (query: Parameters<typeof findTraces>[2]): Promise<string[]> =>
    (await findTraces(api, [experimentId], query)).map(x => x.trace_id).sort()
  t.same(await ids({ user: 'alice@example.com' }), [alice])
  t.same(await ids({ session: 'session-43' }), [bob])
  t.same(await ids({ environment: 'production' }), [alice, bob].sort())
  t.same(await ids({ clientRequestId: 'req-def' }), [bob])
  t.same(await ids({ from: before, to: Date.now() + 1000, user: 'bob@example.com' }), [bob])
  t.same(await ids({ from: Date.now() + 60_000 }), [])
  await tracing.shutdown(5000)
})

t.test('search values with quotes, backticks and backslashes neither break nor widen the filter', async t => {
  const server = await realMlflow(t)
  const { tracing, experimentId } = await client(server.uri)
  const users = ["o'brien", 'back`tick', 'a"b', "both'\"q", 'both_"q', 'trail\\', "x' OR '1'='1", '%', 'plain']
  const traceOf = new Map(users.map(u => [u, agentTrace(tracing, u, `s-${u}`, `r-${u}`)]))
  t.ok(await tracing.flush(20_000))
  for (const user of users) {
    const found = await findTraces(tracing.client!, [experimentId], { user })
    t.same(found.map(x => x.trace_id), [traceOf.get(user)], `exactly the trace of ${JSON.stringify(user)}`)
  }
  await tracing.shutdown(5000)
})

t.test('an experiment name is found or created once, and reused', async t => {
  const server = await realMlflow(t)
  const name = `named-${randomUUID()}`
  const first = new MlflowTracing({ trackingUri: server.uri, experimentName: name, logger: quiet }, {})
  const second = new MlflowTracing({ trackingUri: server.uri, experimentName: name, logger: quiet }, {})
  const [a, b] = await Promise.all([first.experimentId(), second.experimentId()])
  t.equal(a, b, 'two processes racing to create the same name agree on one experiment')
  t.match(a, /^\d+$/)
})

t.test('bad configuration against the real server fails with the setting named', async t => {
  const server = await realMlflow(t)
  const missing = new MlflowTracing({ trackingUri: server.uri, experimentId: '987654', logger: quiet }, {})
  await t.rejects(missing.start(), { code: 'FST_MLFLOW_INVALID_OPTION', message: /MLFLOW_EXPERIMENT_ID/ })

  // A deleted experiment: refused at start-up, and a trace sent after the deletion is rejected by
  // the server (not retried), counted, and logged once with the server's message.
  const { tracing, experimentId } = await client(server.uri)
  const errors: string[] = []
  const live = new MlflowTracing({ trackingUri: server.uri, experimentId, logger: { info () {}, warn () {}, error: (o: object) => errors.push(JSON.stringify(o)) } }, {})
  await live.start()
  const res = await fetch(`${server.uri}/api/2.0/mlflow/experiments/delete`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ experiment_id: experimentId }) })
  t.equal(res.status, 200)
  await t.rejects(new MlflowTracing({ trackingUri: server.uri, experimentId, logger: quiet }, {}).start(),
    { code: 'FST_MLFLOW_INVALID_OPTION', message: /MLFLOW_EXPERIMENT_ID.*deleted/ })
  agentTrace(live, 'carol@example.com', 's', 'r')
  agentTrace(live, 'carol@example.com', 's', 'r2')
  t.ok(await live.flush(20_000))
  t.match(live.stats(), { exported: 0, retried: 0, dropped: { rejected: 2 } })
  t.equal(errors.length, 1, 'logged once')
  t.match(errors[0], /deleted|not active|does not exist/i, "the server's own words")
  await tracing.shutdown(1000)
})
