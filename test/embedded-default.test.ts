import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { MlflowTracing } from '../plugin/index'
import { realMlflow } from './helpers/mlflow'

t.test('without a tracking URI, traces go to a JSON Lines file that MLflow can read', async t => {
  const dir = t.testdir()
  const file = join(dir, 'traces', 'out.jsonl')
  const logged: string[] = []
  const tracing = new MlflowTracing({ logger: { info: (_o, m) => logged.push(String(m)), warn () {}, error () {} } }, { MLFLOW_TRACES_FILE: file })
  await tracing.start()
  t.match(logged[0], `traces go to local file ${file}`, 'a start-up line says where traces go')

  const ids: string[] = []
  for (const user of ['alice@example.com', 'bob@example.com']) {
    const root = tracing.tracer.startSpan('POST /chat')
    root.setSpanType('AGENT').setInputs({ message: 'hi' }).setOutputs({ answer: 'hello' })
    root.trace.setMetadata({ 'mlflow.trace.user': user })
    root.trace.clientRequestId = `req-${user}`
    root.end()
    ids.push(root.trace.id)
  }
  t.ok(await tracing.shutdown(5000))
  t.match(tracing.stats(), { exported: 2 })

  const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
  t.equal(lines.length, 2, 'one trace a line')
  const first = JSON.parse(lines[0])
  t.same(Object.keys(first), ['info', 'data'])
  t.equal(first.info.trace_id, ids[0])
  t.equal(first.data.spans[0].name, 'POST /chat')

  const server = await realMlflow(t)
  const parsed = await server.python(`
import json
from mlflow.entities import Trace
traces = [Trace.from_json(line) for line in open(${JSON.stringify(file)})]
print(json.dumps([{"id": x.info.trace_id, "user": x.info.trace_metadata.get("mlflow.trace.user"),
  "request_id": x.info.client_request_id, "root": x.data.spans[0].name, "type": x.data.spans[0].span_type,
  "inputs": x.data.spans[0].inputs} for x in traces]))
`)
  t.same(parsed, [
    { id: ids[0], user: 'alice@example.com', request_id: 'req-alice@example.com', root: 'POST /chat', type: 'AGENT', inputs: { message: 'hi' } },
    { id: ids[1], user: 'bob@example.com', request_id: 'req-bob@example.com', root: 'POST /chat', type: 'AGENT', inputs: { message: 'hi' } }
  ], "MLflow's Trace.from_json reads every line")
})
