// Where spans land on a real server, and what MLflow builds on them, read back by the Python client.
import { ROOT_CONTEXT, trace } from '@opentelemetry/api'
import { randomUUID } from 'node:crypto'
import t from 'tap'
import type { SpanUploadOption } from '../plugin/export/span-upload'
import { MlflowTracing } from '../plugin/tracing'
import { recordingLogger } from './helpers/fake-server'
import { realMlflow, type RealMlflow } from './helpers/mlflow'

/** One agent-shaped trace per call, with a word of its own in the input; returns the MLflow trace id. */
function chatTrace (tracing: MlflowTracing, word: string): string {
  const root = tracing.tracer.startSpan('POST /chat')
  root.setSpanType('AGENT').setInputs({ message: `tell me about ${word}` })
  root.trace.setMetadata({ 'mlflow.trace.user': 'alice@example.com', agent_version: '2.0.0' })
  root.trace.clientRequestId = `req-${word}`
  const under = trace.setSpan(ROOT_CONTEXT, root)
  tracing.tracer.startSpan('retrieve notes', {}, under).setSpanType('RETRIEVER').setOutputs([{ text: 'notes' }]).end()
  const llm = tracing.tracer.startSpan('chat fake-model', {}, under)
  llm.setSpanType('LLM').setInputs({ messages: [{ role: 'user', content: word }] })
  llm.setAttributes({ 'gen_ai.usage.input_tokens': 12, 'gen_ai.response.finish_reasons': ['stop'], 'gen_ai.request.model': 'fake-model' })
  llm.setTokenUsage({ input_tokens: 12, output_tokens: 3 })
  llm.setOutputs({ choices: [{ index: 0, message: { role: 'assistant', content: `${word} is fine` }, finish_reason: 'stop' }] })
  llm.end()
  root.setOutputs({ answer: `${word} is fine` })
  root.end()
  return root.trace.id
}

async function exportOne (uri: string, spanUpload: SpanUploadOption, word: string): Promise<{ experimentId: string, traceId: string, logger: ReturnType<typeof recordingLogger> }> {
  const logger = recordingLogger()
  const tracing = new MlflowTracing({ trackingUri: uri, experimentName: `span-store-${randomUUID()}`, spanUpload, logger }, {})
  await tracing.start()
  const traceId = chatTrace(tracing, word)
  await tracing.shutdown(20_000)
  return { experimentId: await tracing.experimentId() as string, traceId, logger }
}

/** What the Python client sees of the trace, and how many traces each search filter finds. */
async function look (server: RealMlflow, experimentId: string, traceId: string, word: string, uri = server.uri): Promise<any> {
  return await server.python(`
import json, mlflow
def count(f):
    try:
        return len(mlflow.search_traces(locations=["${experimentId}"], filter_string=f, return_type="list"))
    except Exception as e:
        return "error: " + str(e)[:200]
t = mlflow.get_trace("${traceId}")
llm = [s for s in t.data.spans if s.span_type == "LLM"][0]
print(json.dumps({
  "spans": sorted(s.name for s in t.data.spans),
  "types": sorted(s.span_type for s in t.data.spans),
  "client_request_id": t.info.client_request_id,
  "agent_version": t.info.trace_metadata.get("agent_version"),
  "user": t.info.trace_metadata.get("mlflow.trace.user"),
  "spans_location": t.info.tags.get("mlflow.trace.spansLocation"),
  "input_tokens": llm.attributes.get("gen_ai.usage.input_tokens"),
  "finish_reasons": llm.attributes.get("gen_ai.response.finish_reasons"),
  "llm_outputs": llm.outputs,
  "found": {
    "llm": count("span.type = 'LLM'"),
    "span_name": count("span.name = 'retrieve notes'"),
    "text": count("trace.text LIKE '%${word}%'"),
    "user": count("metadata.\`mlflow.trace.user\` = 'alice@example.com'"),
  },
}))
`, { MLFLOW_TRACKING_URI: uri })
}

t.test('OTLP (the default on 3.4+): spans land in the span store, and the span filters find them', async t => {
  const server = await realMlflow(t)
  const word = `zebra${randomUUID().slice(0, 8)}`
  const { experimentId, traceId, logger } = await exportOne(server.uri, 'auto', word)
  t.match(logger.calls.info.at(-1)?.msg, /spans over OTLP into the span store/)
  const seen = await look(server, experimentId, traceId, word)
  t.same(seen.spans, ['POST /chat', 'chat fake-model', 'retrieve notes'])
  t.same(seen.types, ['AGENT', 'LLM', 'RETRIEVER'], 'span types stored once-encoded, as the type filter expects')
  t.match(seen, { client_request_id: `req-${word}`, agent_version: '2.0.0', user: 'alice@example.com', spans_location: 'TRACKING_STORE' })
  t.equal(seen.input_tokens, 12, 'integers stay integers')
  t.same(seen.finish_reasons, ['stop'], 'lists stay lists')
  t.same(seen.llm_outputs, { choices: [{ index: 0, message: { role: 'assistant', content: `${word} is fine` }, finish_reason: 'stop' }] })
  t.same(seen.found, { llm: 1, span_name: 1, text: 1, user: 1 })
})

t.test('artifact (forced): the same trace reads back whole, but MLflow has no span rows to search', async t => {
  const server = await realMlflow(t)
  const word = `okapi${randomUUID().slice(0, 8)}`
  const { experimentId, traceId } = await exportOne(server.uri, 'artifact', word)
  const seen = await look(server, experimentId, traceId, word)
  t.same(seen.spans, ['POST /chat', 'chat fake-model', 'retrieve notes'])
  t.match(seen, { client_request_id: `req-${word}`, agent_version: '2.0.0', input_tokens: 12 })
  t.equal(seen.spans_location, null, 'no span-store tag')
  t.same(seen.found, { llm: 0, span_name: 0, text: 0, user: 1 }, 'metadata search works; span search does not')
})

t.test('a file-store server answers OTLP with 501: spans fall back to traces.json, nothing is lost', async t => {
  const server = await realMlflow(t)
  // The script has top-level await for its CLI: import() it rather than require it.
  const { startMlflowServer } = await import('../scripts/mlflow-server.mjs')
  const fileServer = await startMlflowServer({ fileStore: true })
  t.teardown(async () => await fileServer.stop())
  const word = `tapir${randomUUID().slice(0, 8)}`
  const { experimentId, traceId, logger } = await exportOne(fileServer.uri, 'auto', word)
  t.match(logger.calls.warn.map(w => w.msg), [/cannot store spans in its database/])
  const seen = await server.python(`
import json, mlflow
t = mlflow.get_trace("${traceId}")
print(json.dumps({"spans": sorted(s.name for s in t.data.spans), "crid": t.info.client_request_id,
  "found": len(mlflow.search_traces(locations=["${experimentId}"], return_type="list"))}))
`, { MLFLOW_TRACKING_URI: fileServer.uri })
  t.same(seen, { spans: ['POST /chat', 'chat fake-model', 'retrieve notes'], crid: `req-${word}`, found: 1 })
})
