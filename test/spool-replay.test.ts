// A replayed trace is not stored twice: a crash after a trace was exported but before its segment
// was removed sends it again. On every claimed server version (3.2.0 takes spans as the
// traces.json artifact, 3.6.0 and later over OTLP): one trace, every span once, as it was.
import { context, trace } from '@opentelemetry/api'
import { randomUUID } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { encodeTrace } from '../plugin/export/spool/codec'
import { destinationDir } from '../plugin/export/spool/options'
import type { TraceRecord } from '../plugin/trace/trace-record'
import { MlflowTracer } from '../plugin/trace/tracer'
import { MlflowTracing } from '../plugin/tracing'
import { spoolDirFor } from './helpers/chaos'
import { recordingLogger } from './helpers/fake-server'
import { listedServers } from './helpers/mlflow'

function agentTrace (): TraceRecord {
  const ended: TraceRecord[] = []
  const tracer = new MlflowTracer(r => ended.push(r))
  const root = tracer.startSpan('POST /chat')
  root.trace.setMetadata({ 'mlflow.trace.user': 'ana', 'mlflow.trace.session': 's-1' })
  root.setInputs({ message: 'hi' })
  const ctx = trace.setSpan(context.active(), root)
  tracer.startSpan('retrieve notes', {}, ctx).setSpanType('RETRIEVER').end()
  const llm = tracer.startSpan('chat fake', {}, ctx)
  llm.setSpanType('LLM').setTokenUsage({ input_tokens: 3, output_tokens: 5 }).end()
  root.setOutputs({ answer: 'hello' }).end()
  return ended[0]
}

for (const server of listedServers()) {
  t.test(`${server.name}: a trace replayed twice is stored once, with every span once`, async t => {
    const mlflow = await server.connect(t)
    const experimentName = `spool-replay-${randomUUID()}`
    const root = spoolDirFor(t)
    const record = agentTrace()
    const dir = destinationDir(root, { host: mlflow.uri, experimentName })
    for (let run = 0; run < 2; run++) {
      // As a crashed process leaves it: the segment still there although its trace went out.
      mkdirSync(dir, { recursive: true })
      writeFileSync(join(dir, `${Date.now()}-999999_deadbeef-${run}.active`), encodeTrace(record) + '\n')
      const logger = recordingLogger()
      const tracing = new MlflowTracing({ trackingUri: mlflow.uri, experimentName, spool: root, logger }, {})
      await tracing.start()
      for (let i = 0; i < 300 && (tracing.stats().spool?.replayed ?? 0) < 1; i++) await sleep(100)
      t.match(tracing.stats(), { exported: 1, spool: { replayed: 1, pending: 0 } }, `replay ${run + 1} exported: ${JSON.stringify(tracing.stats())}`)
      await tracing.shutdown(5000)
    }
    const stored = await mlflow.python(`
import json, mlflow
exp = mlflow.get_experiment_by_name(${JSON.stringify(experimentName)})
found = mlflow.search_traces(experiment_ids=[exp.experiment_id], return_type='list')
tr = mlflow.get_trace(${JSON.stringify(record.id)})
print(json.dumps({'ids': [f.info.trace_id for f in found], 'spans': sorted(s.name for s in tr.data.spans),
  'user': tr.info.trace_metadata.get('mlflow.trace.user'), 'request': tr.info.request_preview}))`)
    t.same(stored, { ids: [record.id], spans: ['POST /chat', 'chat fake', 'retrieve notes'], user: 'ana', request: '{"message":"hi"}' })
  })
}
