// The example agent as its users run it: `npm run build`, then `node dist/example-app/server.js` in
// its own process, real HTTP requests, SIGTERM, and the traces found again with the traces CLI
// (from the embedded default's file) and with MLflow's Python client (from a real server).
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { bareEnv, buildOnce, EXAMPLE_SERVERS, parseSse, postJson, runTracesCli, startApp, traceIds, type RunningApp } from './helpers/example-app'
import { realMlflow } from './helpers/mlflow'

const QUESTION = { message: 'What is MLflow?' }
const STREAM_QUESTION = { message: 'Tell me about Fastify' }

// Every check runs once per example server (Fastify and Express): twice the .taprc budget.
t.setTimeout(240_000)

t.before(async () => {
  t.comment(`example app: ${await buildOnce()}`)
})

interface FileSpan {
  name: string
  span_id: string
  parent_span_id: string
  start: bigint
  end: bigint
  /** Attribute values decoded from their JSON text. */
  attributes: Record<string, any>
  status: { code: string, message: string }
  events: Array<{ name: string, attributes: Record<string, any> }>
}

interface FileTrace {
  info: Record<string, any>
  spans: FileSpan[]
  byName: (name: string) => FileSpan
  root: FileSpan
}

/** Reads the embedded default's JSON Lines file, keeping nanosecond times exact. */
function readTraces (file: string): FileTrace[] {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map(line => {
    const doc = JSON.parse(line.replace(/"(start_time_unix_nano|end_time_unix_nano|time_unix_nano)":(\d+)/g, '"$1":"$2"'))
    const spans: FileSpan[] = doc.data.spans.map((s: any) => ({
      name: s.name,
      span_id: s.span_id,
      parent_span_id: s.parent_span_id,
      start: BigInt(s.start_time_unix_nano),
      end: BigInt(s.end_time_unix_nano),
      attributes: Object.fromEntries(Object.entries(s.attributes as Record<string, string>).map(([k, v]) => [k, JSON.parse(v)])),
      status: s.status,
      events: s.events
    }))
    const byName = (name: string): FileSpan => {
      const span = spans.find(s => s.name === name)
      if (span === undefined) throw new Error(`no span ${name} in ${spans.map(s => s.name).join(', ')}`)
      return span
    }
    const root = spans.find(s => s.parent_span_id === '')
    if (root === undefined) throw new Error(`trace ${doc.info.trace_id as string} has no root span`)
    return { info: doc.info, spans, byName, root }
  })
}

interface Chatted {
  chat: { traceId: string, body: any }
  stream: { traceId: string, events: Array<{ event: string, data: any }> }
}

/** POST /chat and POST /chat/stream as `user` in `session`, GET /healthz; asserts the answers. */
async function converse (t: Test, app: RunningApp, user: string, session: string, requestId: string): Promise<Chatted> {
  const chatRes = await postJson(`${app.url}/chat`, QUESTION, { 'x-session-id': session, 'x-request-id': requestId, 'X-Forwarded-Email': user })
  t.equal(chatRes.status, 200, 'POST /chat answers 200')
  t.match(chatRes.headers.get('content-type'), /^application\/json/)
  const chatBody = await chatRes.json() as { answer: string, traceId: string }
  const chatTrace = chatRes.headers.get('x-mlflow-trace-id') as string
  t.match(chatTrace, /^tr-[0-9a-f]{32}$/, 'x-mlflow-trace-id names the trace')
  t.match(chatBody, { answer: /MLflow is an open source platform/ }, 'the answer uses the retrieved note')
  t.equal(chatBody.traceId, chatTrace, 'body.traceId is the x-mlflow-trace-id header')

  const streamRes = await postJson(`${app.url}/chat/stream`, STREAM_QUESTION, { 'x-session-id': session, 'x-request-id': `${requestId}-stream`, 'X-Forwarded-Email': user })
  t.equal(streamRes.status, 200, 'POST /chat/stream answers 200')
  t.match(streamRes.headers.get('content-type'), /^text\/event-stream/)
  const streamTrace = streamRes.headers.get('x-mlflow-trace-id') as string
  t.match(streamTrace, /^tr-[0-9a-f]{32}$/)
  t.not(streamTrace, chatTrace)
  const events = parseSse(await streamRes.text())
  const deltas = events.filter(e => e.event === 'message')
  t.ok(deltas.length >= 3, `several data: events (${deltas.length})`)
  t.ok(deltas.every(e => typeof e.data.delta === 'string'), 'each carries a delta')
  t.match(deltas.map(e => e.data.delta).join(''), /^From what I know: Fastify is a fast/, 'the deltas make the answer')
  t.same(events.at(-1), { event: 'done', data: { traceId: streamTrace } }, 'the last event is `done` with the trace id')
  t.equal(events.filter(e => e.event === 'done').length, 1)

  const health = await fetch(`${app.url}/healthz`)
  t.equal(health.status, 200, 'GET /healthz answers 200')
  t.same(await health.json(), { ok: true })
  t.equal(health.headers.get('x-mlflow-trace-id'), null, '/healthz is not traced (no trace id header)')

  return { chat: { traceId: chatTrace, body: chatBody }, stream: { traceId: streamTrace, events } }
}

/** The span tree both destinations must show for POST /chat/stream. */
const STREAM_SPANS = ['POST /chat/stream', 'retrieve notes', 'chat fake-chat-1', 'stream answer']

for (const example of EXAMPLE_SERVERS) {
t.test(example.name, async t => {
  t.test('embedded default: traces in the local file, found with the traces CLI', async t => {
    const dir = t.testdir()
    const file = join(dir, 'traces.jsonl')
    const env = bareEnv({ PORT: '0', MLFLOW_TRACES_FILE: file, TRUST_FORWARDED_IDENTITY: 'true' })
    const app = await startApp(t, env, example.argv)
    const startLine = app.logs().find(l => typeof l.msg === 'string' && l.msg.startsWith('MLflow tracing: traces go to'))
    t.ok(startLine, 'a start-up line says where traces go')
    t.match(startLine?.msg, `traces go to local file ${file}`, 'the start-up line names the file')

    const user = 'alice@example.com'
    const session = `conv-${randomUUID()}`
    const requestId = `req-${randomUUID()}`
    const { chat, stream } = await converse(t, app, user, session, requestId)

    t.same(await app.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM: the server closes and exits 0')
    t.match(app.stdout(), /closing: draining requests and flushing traces/)
    t.equal(app.stderr(), '', 'nothing on stderr')

    const traces = readTraces(file)
    t.same(traces.map(x => x.info.trace_id).sort(), [chat.traceId, stream.traceId].sort(), 'the file has exactly the two traces (no /healthz)')

    // The traces CLI, as `npm run traces` runs it.
    const cliEnv = bareEnv({ MLFLOW_TRACES_FILE: file })
    const byUser = await runTracesCli(['--user', user], cliEnv)
    t.equal(byUser.code, 0, '--user exits 0')
    t.same(traceIds(byUser.stdout).sort(), [chat.traceId, stream.traceId].sort(), '--user lists both traces')
    t.match(byUser.stdout.split('\n')[0], /^time \(UTC\)\s+trace id\s+state\s+duration\s+user\s+session\s+env\s+request id\s+request\s+feedback$/, 'a table header')
    t.match(byUser.stderr, `2 trace(s) from local file ${file}`)
    const chatRow = byUser.stdout.split('\n').find(l => l.includes(chat.traceId)) as string
    for (const cell of [user, session, 'development', requestId, 'OK', 'What is MLflow?']) t.ok(chatRow.includes(cell), `the /chat row shows ${cell}`)

    const bySession = await runTracesCli(['--session', session], cliEnv)
    t.equal(bySession.code, 0)
    t.same(traceIds(bySession.stdout), [stream.traceId, chat.traceId], '--session lists both, newest first')

    const asJson = await runTracesCli(['--session', session, '--json'], cliEnv)
    t.equal(asJson.code, 0)
    const infos = JSON.parse(asJson.stdout) as Array<Record<string, any>>
    t.same(infos.map(i => i.trace_id), [stream.traceId, chat.traceId], '--json: the same two traces')
    t.match(infos[1], { client_request_id: requestId, state: 'OK', trace_metadata: { 'mlflow.trace.user': user, 'mlflow.trace.session': session } })

    const byRequest = await runTracesCli(['--request-id', requestId, '--json'], cliEnv)
    t.same((JSON.parse(byRequest.stdout) as Array<{ trace_id: string }>).map(i => i.trace_id), [chat.traceId], '--request-id finds the /chat trace only')
    const otherUser = await runTracesCli(['--user', 'bob@example.com', '--json'], cliEnv)
    t.same(JSON.parse(otherUser.stdout), [], 'another user finds nothing')
    const otherSession = await runTracesCli(['--session', 'conv-other'], cliEnv)
    t.same(traceIds(otherSession.stdout), [], 'another session finds nothing')
    t.match(otherSession.stderr, '0 trace(s)')

    // The /chat trace's spans.
    const chatTrace = traces.find(x => x.info.trace_id === chat.traceId) as FileTrace
    t.match(chatTrace.info, {
      state: 'OK',
      client_request_id: requestId,
      request_preview: QUESTION.message,
      trace_metadata: { 'mlflow.trace.user': user, user_source: 'x-forwarded-email', 'mlflow.trace.session': session, 'mlflow.source.type': 'development' }
    })
    t.equal(chatTrace.root.name, 'POST /chat', 'the root is POST /chat')
    t.equal(chatTrace.root.attributes['mlflow.spanType'], 'AGENT', 'of type AGENT')
    t.same(chatTrace.root.attributes['mlflow.spanInputs'], QUESTION)
    t.same(chatTrace.root.attributes['mlflow.spanOutputs'], chat.body)
    t.same(chatTrace.spans.map(s => s.name), ['POST /chat', 'retrieve notes', 'chat fake-chat-1'])
    const retriever = chatTrace.byName('retrieve notes')
    t.equal(retriever.attributes['mlflow.spanType'], 'RETRIEVER')
    t.equal(retriever.parent_span_id, chatTrace.root.span_id)
    t.match(retriever.attributes['mlflow.spanOutputs'], [{ id: 'mlflow' }])
    const llm = chatTrace.byName('chat fake-chat-1')
    t.equal(llm.attributes['mlflow.spanType'], 'LLM')
    t.equal(llm.parent_span_id, chatTrace.root.span_id)
    t.match(llm.attributes, {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'example',
      'gen_ai.request.model': 'fake-chat-1',
      'gen_ai.response.model': 'fake-chat-1-001',
      'gen_ai.response.id': /^cmpl-[0-9a-f]{12}$/,
      'gen_ai.response.finish_reasons': ['stop'],
      'gen_ai.usage.input_tokens': Number,
      'gen_ai.usage.output_tokens': Number,
      'gen_ai.conversation.id': session
    }, 'gen_ai attributes on the LLM span')
    const usage = llm.attributes['mlflow.chat.tokenUsage']
    t.same(usage, {
      input_tokens: llm.attributes['gen_ai.usage.input_tokens'],
      output_tokens: llm.attributes['gen_ai.usage.output_tokens'],
      total_tokens: llm.attributes['gen_ai.usage.input_tokens'] + llm.attributes['gen_ai.usage.output_tokens']
    }, 'mlflow.chat.tokenUsage matches the gen_ai usage')
    t.same(JSON.parse(chatTrace.info.trace_metadata['mlflow.trace.tokenUsage']), usage, 'the trace totals the token usage')

    // The stream trace ends after the last event, not when the handler returned.
    const streamTrace = traces.find(x => x.info.trace_id === stream.traceId) as FileTrace
    t.equal(streamTrace.info.state, 'OK')
    t.equal(streamTrace.root.attributes['mlflow.spanType'], 'AGENT')
    t.same(streamTrace.spans.map(s => s.name).sort(), [...STREAM_SPANS].sort())
    const streamLlm = streamTrace.byName('chat fake-chat-1')
    const streamed = streamTrace.byName('stream answer')
    t.equal(streamed.parent_span_id, streamTrace.root.span_id, 'stream answer hangs under the root')
    t.equal(streamed.attributes['mlflow.spanType'], 'CHAIN')
    t.same(streamed.attributes['mlflow.spanOutputs'], { events: stream.events.length - 1 }, 'stream answer counts the data events')
    t.ok(streamTrace.root.end >= streamLlm.end, 'the root ends after the LLM span')
    t.ok(streamTrace.root.end >= streamed.end, 'the root ends after the last event was written')
    t.ok(streamed.end - streamed.start > 0n)
  })

  t.test('embedded default: a client leaving in the middle of /chat/stream gives one ERROR trace', async t => {
    const file = join(t.testdir(), 'traces.jsonl')
    const app = await startApp(t, bareEnv({ PORT: '0', MLFLOW_TRACES_FILE: file }), example.argv)
    const session = `conv-${randomUUID()}`
    const controller = new AbortController()
    const streaming = await fetch(`${app.url}/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session },
      body: JSON.stringify(STREAM_QUESTION),
      signal: controller.signal
    })
    t.equal(streaming.status, 200)
    const traceId = streaming.headers.get('x-mlflow-trace-id') as string
    const reader = (streaming.body as ReadableStream<Uint8Array>).getReader()
    const first = await reader.read()
    t.match(new TextDecoder().decode(first.value), /^data: /, 'the first event arrived')
    controller.abort()
    await reader.read().catch(() => undefined)

    // The server notices the closed socket; then SIGTERM flushes.
    await new Promise(resolve => setTimeout(resolve, 300))
    t.same(await app.stop('SIGTERM'), { code: 0, signal: null }, 'the server survives the disconnect and exits 0 on SIGTERM')
    t.notMatch(app.stderr(), /Error|uncaught/i, 'no crash on stderr')

    const traces = readTraces(file)
    t.same(traces.map(x => x.info.trace_id), [traceId], 'the file has exactly one trace: the aborted request (not lost, not duplicated)')
    const aborted = traces.filter(x => x.info.trace_id === traceId)
    t.equal(aborted[0]?.info.state, 'ERROR', 'in state ERROR')
    t.equal(aborted[0]?.root.status.code, 'STATUS_CODE_ERROR')
    t.comment(`aborted trace: root status ${JSON.stringify(aborted[0]?.root.status)}; spans ${aborted[0]?.spans.map(s => s.name).join(', ')}`)
  })

  t.test('embedded default: a connection opened but never used does not hold up SIGTERM', async t => {
    // Node never counts such a connection as idle, and Fastify runs onClose hooks (the flush) only
    // once every connection is gone: the server must close it itself within its budget.
    const file = join(t.testdir(), 'traces.jsonl')
    const app = await startApp(t, bareEnv({ PORT: '0', MLFLOW_TRACES_FILE: file }), example.argv)
    const res = await postJson(`${app.url}/chat`, QUESTION)
    t.equal(res.status, 200)
    const traceId = res.headers.get('x-mlflow-trace-id')
    const socket = connect(app.port, '127.0.0.1')
    await once(socket, 'connect')
    t.teardown(() => { socket.destroy() })
    t.same(await app.stop('SIGTERM'), { code: 0, signal: null }, 'exit 0, not the 14 s budget\'s exit 1')
    t.same(readTraces(file).map(x => x.info.trace_id), [traceId], 'the trace is in the file')
  })

  t.test('against a real MLflow server: found by user and session with the Python client and the CLI', async t => {
    const server = await realMlflow(t)
    const experimentName = `example-${randomUUID()}`
    const mlflowEnv = { MLFLOW_TRACKING_URI: server.uri, MLFLOW_EXPERIMENT_NAME: experimentName }
    const app = await startApp(t, bareEnv({
      PORT: '0',
      ...mlflowEnv,
      APP_ENVIRONMENT: 'production',
      AGENT_VERSION: '9.9.9',
      TRUST_FORWARDED_IDENTITY: 'true'
    }), example.argv)
    t.match(app.logs().find(l => typeof l.destination === 'string')?.destination, `MLflow at ${server.uri}`, 'the start-up line names the server')

    const user = `user-${randomUUID()}@example.com`
    const session = `conv-${randomUUID()}`
    const requestId = `req-${randomUUID()}`
    const { chat, stream } = await converse(t, app, user, session, requestId)
    t.same(await app.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM: flushed and exited 0')
    t.equal(app.stderr(), '')
    t.notMatch(app.stdout(), /"level":(40|50)/, 'no warning or error logged')

    const seen = await server.python(`
import json, mlflow
exp = mlflow.get_experiment_by_name(${JSON.stringify(experimentName)})
def search(f):
    return sorted(x.info.trace_id for x in mlflow.search_traces(experiment_ids=[exp.experiment_id], return_type="list", filter_string=f))
def read(trace_id):
    t = mlflow.get_trace(trace_id)
    return {
        "state": str(t.info.state),
        "client_request_id": t.info.client_request_id,
        "metadata": t.info.trace_metadata,
        "tags": t.info.tags,
        "response_preview": t.info.response_preview,
        "root": t.data._get_root_span().name,
        "spans": [{"name": s.name, "span_id": s.span_id, "parent_id": s.parent_id, "span_type": s.span_type,
                   "start": s.start_time_ns, "end": s.end_time_ns, "outputs": s.outputs} for s in t.data.spans],
    }
print(json.dumps({
    "experiment_id": exp.experiment_id,
    "by_user": search("metadata.\`mlflow.trace.user\` = '${user}'"),
    "by_session": search("metadata.\`mlflow.trace.session\` = '${session}'"),
    "by_user_in_production": search("metadata.\`mlflow.trace.user\` = '${user}' AND metadata.\`mlflow.source.type\` = 'production'"),
    # These read the span store, which only spans sent over OTLP reach.
    "by_text": search("trace.text LIKE '%Fastify%'"),
    "by_span_type": search("span.type = 'LLM'"),
    "by_span_name": search("span.name = 'retrieve notes'"),
    "by_trace_name": search("trace.name = 'POST /chat'"),
    "chat": read(${JSON.stringify(chat.traceId)}),
    "stream": read(${JSON.stringify(stream.traceId)}),
}))
  `)
    const both = [chat.traceId, stream.traceId].sort()
    t.same(seen.by_user, both, 'the user filter finds both traces')
    t.same(seen.by_session, both, 'the session filter finds both traces')
    t.same(seen.by_user_in_production, both, 'user + environment finds both')
    t.ok(seen.by_text.includes(stream.traceId), "trace.text LIKE '%Fastify%' finds the trace asked about Fastify")
    t.same(seen.by_span_type, both, "span.type = 'LLM' finds both")
    t.same(seen.by_span_name, both, "span.name = 'retrieve notes' finds both")
    t.same(seen.by_trace_name, [chat.traceId], "trace.name = 'POST /chat' finds the chat trace")
    for (const which of ['chat', 'stream'] as const) {
      t.match(seen[which].state, /OK/)
      t.match(seen[which].metadata, {
        'mlflow.trace.user': user,
        'mlflow.trace.session': session,
        'mlflow.source.type': 'production',
        agent_version: '9.9.9'
      }, `${which}: deployment metadata`)
    }
    t.equal(seen.chat.client_request_id, requestId, 'client_request_id is the x-request-id')
    t.equal(seen.chat.root, 'POST /chat')

    const spans = seen.stream.spans as Array<{ name: string, span_id: string, parent_id: string | null, span_type: string, start: number, end: number, outputs: unknown }>
    t.equal(seen.stream.root, 'POST /chat/stream', 'MLflow finds POST /chat/stream as the root')
    t.same(spans.map(s => s.name).sort(), [...STREAM_SPANS].sort(), 'get_trace shows the stream spans')
    const root = spans.find(s => s.name === 'POST /chat/stream')
    const byName = (name: string): typeof spans[number] => spans.find(s => s.name === name) as typeof spans[number]
    t.equal(root?.span_type, 'AGENT')
    t.same(spans.filter(s => s !== root).map(s => s.parent_id), [root?.span_id, root?.span_id, root?.span_id], 'the others hang under the root')
    t.same(spans.map(s => s.span_type).sort(), ['AGENT', 'CHAIN', 'LLM', 'RETRIEVER'])
    t.same(byName('stream answer').outputs, { events: stream.events.length - 1 })
    // Nanoseconds as Python ints come back as JSON numbers beyond 2^53: compare at microsecond grain.
    t.ok((root?.end ?? 0) >= byName('chat fake-chat-1').end - 1000, 'the root ends after the LLM span')
    t.ok((root?.end ?? 0) >= byName('stream answer').end - 1000, 'and after the stream was written')

    // What the MLflow UI renders from: chat-completion outputs, root outputs and previews, trace names.
    const completion = (content: string, finishReason: string | null): unknown => ({ index: 0, message: { role: 'assistant', content }, finish_reason: finishReason })
    const chatSpans = seen.chat.spans as typeof spans
    const chatLlm = chatSpans.find(s => s.name === 'chat fake-chat-1')
    t.match(chatLlm?.outputs, {
      id: /^cmpl-[0-9a-f]{12}$/,
      object: 'chat.completion',
      model: 'fake-chat-1-001',
      choices: [completion(chat.body.answer, 'stop')],
      usage: { prompt_tokens: Number, completion_tokens: Number, total_tokens: Number }
    }, 'the LLM span\'s outputs are a chat completion')
    t.same((chatLlm?.outputs as any).choices, [completion(chat.body.answer, 'stop')], 'with the one assistant message')
    const streamedText = stream.events.filter(e => e.event === 'message').map(e => e.data.delta).join('')
    t.same(root?.outputs, { object: 'chat.completion', choices: [completion(streamedText, null)] }, 'the streamed trace\'s root outputs are the text the client read')
    t.equal(seen.stream.response_preview, streamedText, 'and its response preview')
    t.equal(seen.chat.tags['mlflow.traceName'], 'POST /chat', 'trace names')
    t.equal(seen.stream.tags['mlflow.traceName'], 'POST /chat/stream')
    for (const which of ['chat', 'stream'] as const) {
      t.equal(JSON.parse(seen[which].metadata['mlflow.trace.sizeStats']).num_spans, seen[which].spans.length, `${which}: sizeStats counts the spans`)
    }

    // The traces CLI against the server.
    const cli = await runTracesCli(['--session', session], bareEnv(mlflowEnv))
    t.equal(cli.code, 0, `the CLI exits 0 ${cli.stderr}`)
    t.same(traceIds(cli.stdout).sort(), both, 'the CLI lists both traces from the server')
    t.match(cli.stderr, `2 trace(s) from MLflow at ${server.uri}`)
    const cliJson = await runTracesCli(['--user', user, '--json'], bareEnv(mlflowEnv))
    t.same((JSON.parse(cliJson.stdout) as Array<{ trace_id: string }>).map(i => i.trace_id).sort(), both, 'the CLI --user --json lists both')
  })

  t.test('against a real MLflow server, off Databricks Apps: no credential exported, a spoofed X-Forwarded-Email is not the user', async t => {
    const server = await realMlflow(t)
    const experimentName = `example-${randomUUID()}`
    // No TRUST_FORWARDED_IDENTITY and no DATABRICKS_APP_NAME: anyone can send X-Forwarded-Email here.
    const app = await startApp(t, bareEnv({ PORT: '0', MLFLOW_TRACKING_URI: server.uri, MLFLOW_EXPERIMENT_NAME: experimentName, APP_ENVIRONMENT: 'staging' }), example.argv)
    const secrets = { auth: `SECRET-AUTH-${randomUUID()}`, cookie: `SECRET-COOKIE-${randomUUID()}` }
    const spoofed = `ceo-${randomUUID()}@example.com`
    const session = `conv-${randomUUID()}`
    const res = await postJson(`${app.url}/chat`, QUESTION, {
      authorization: `Bearer ${secrets.auth}`, cookie: `sid=${secrets.cookie}`, 'x-forwarded-email': spoofed, 'x-session-id': session
    })
    t.equal(res.status, 200)
    const traceId = res.headers.get('x-mlflow-trace-id') as string
    t.same(await app.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM: flushed and exited 0')

    const seen = await server.python(`
import json, mlflow
mlflow.set_experiment(${JSON.stringify(experimentName)})
ids = lambda f: [x.info.trace_id for x in mlflow.search_traces(return_type="list", filter_string=f)]
t = mlflow.get_trace(${JSON.stringify(traceId)})
print(json.dumps({
    "by_session": ids("metadata.\`mlflow.trace.session\` = '${session}'"),
    "by_spoofed_user": ids("metadata.\`mlflow.trace.user\` = '${spoofed}'"),
    "metadata": t.info.trace_metadata,
    "everything": t.to_json(),
}))
  `)
    t.same(seen.by_session, [traceId], 'found by session and environment')
    t.same(seen.by_spoofed_user, [], 'not findable as the spoofed user')
    t.notOk('mlflow.trace.user' in seen.metadata, 'no user recorded')
    t.equal(seen.metadata['mlflow.source.type'], 'staging')
    for (const [name, value] of Object.entries(secrets)) t.notOk(seen.everything.includes(value), `the ${name} value is in no exported byte`)
  })
})
}
