// The spool's faults: a read-only directory, a torn segment, a trace in the spool that the server
// rejects. The torn segment replays into a real server; fakes only inject the 4xx and the outage.
import Fastify from 'fastify'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { fastifyMlflowTracing } from '../plugin/index'
import { encodeTrace } from '../plugin/export/spool/codec'
import { destinationDir } from '../plugin/export/spool/options'
import type { TraceRecord } from '../plugin/trace/trace-record'
import { MlflowTracer } from '../plugin/trace/tracer'
import { MlflowTracing } from '../plugin/tracing'
import { spoolDirFor } from './helpers/chaos'
import { closedPort, FakeServer, recordingLogger } from './helpers/fake-server'
import { realMlflow } from './helpers/mlflow'

const TRACES = '/api/3.0/mlflow/traces'

function traces (n: number): TraceRecord[] {
  const ended: TraceRecord[] = []
  const tracer = new MlflowTracer(r => ended.push(r))
  for (let i = 0; i < n; i++) {
    const span = tracer.startSpan(`spooled ${i}`)
    span.setInputs({ i })
    span.end()
  }
  return ended
}

/** A segment as a process that has since died left it, optionally with a torn last line. */
function leaveSegment (dir: string, records: TraceRecord[], torn = false): void {
  mkdirSync(dir, { recursive: true })
  const text = records.map(r => encodeTrace(r) + '\n').join('') + (torn ? encodeTrace(traces(1)[0]).slice(0, 50) : '')
  writeFileSync(join(dir, `${Date.now()}-999999_deadbeef-0.active`), text)
}

async function drained (tracing: MlflowTracing, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((tracing.stats().spool?.pending ?? 0) > 0 || tracing.stats().inFlight > 0) {
    if (Date.now() > deadline) throw new Error(`spool not drained: ${JSON.stringify(tracing.stats())}`)
    await sleep(100)
  }
}

t.test('a torn segment left by a crash: its whole traces reach the real server, the torn line is counted', async t => {
  const mlflow = await realMlflow(t)
  const experimentName = `spool-torn-${Date.now()}`
  const root = spoolDirFor(t)
  const left = traces(3)
  leaveSegment(destinationDir(root, { host: mlflow.uri, experimentName }), left, true)
  const logger = recordingLogger()
  const tracing = new MlflowTracing({ trackingUri: mlflow.uri, experimentName, spool: root, logger }, {})
  t.teardown(async () => { await tracing.shutdown(1000) })
  await tracing.start()
  t.match(logger.calls.info.at(-1)?.msg, /; 3 spooled traces found in /)
  await drained(tracing)
  const stored = await mlflow.python(`
import json, mlflow
print(json.dumps([mlflow.get_trace(i).info.request_preview for i in ${JSON.stringify(left.map(r => r.id))}]))`)
  t.same(stored, ['{"i":0}', '{"i":1}', '{"i":2}'], 'each spooled trace is stored, as it was')
  t.match(tracing.stats().spool, { pending: 0, replayed: 3, dropped: { torn: 1 } })
})

t.test('a trace in the spool that the server rejects (4xx) is counted and does not hold back the rest', async t => {
  const server = await FakeServer.start()
  t.teardown(async () => await server.close())
  const [good1, bad, good2] = traces(3)
  server.route('POST', TRACES, req => {
    const id = (JSON.parse(req.body) as { trace: { trace_info: { trace_id: string } } }).trace.trace_info.trace_id
    if (id === bad.id) return { status: 400, body: { error_code: 'INVALID_PARAMETER_VALUE', message: 'no such thing' } }
    return { body: { trace_info: { trace_id: id, tags: {} } } }
  })
  const root = spoolDirFor(t)
  leaveSegment(destinationDir(root, { host: server.url, experimentId: '1' }), [good1, bad, good2])
  const tracing = new MlflowTracing({ trackingUri: server.url, experimentId: '1', spool: root, logger: recordingLogger(), spanUpload: 'artifact' }, {})
  t.teardown(async () => { await tracing.shutdown(1000) })
  await tracing.start()
  await drained(tracing)
  const posted = server.received('POST', TRACES).map(r => JSON.parse(r.body).trace.trace_info.trace_id)
  t.ok(posted.includes(good1.id) && posted.includes(good2.id), 'both good traces are sent')
  t.equal(tracing.stats().dropped.rejected, 1)
  t.match(tracing.stats().spool, { pending: 0, replayed: 3 })
})

t.test('a read-only spool directory: every request answers 200, one warning, and the traces stay in memory', async t => {
  const root = spoolDirFor(t)
  // Root may write into a read-only directory: a path under a regular file is unwritable for anyone.
  writeFileSync(join(root, 'read-only'), '')
  const logger = recordingLogger()
  const app = Fastify()
  await app.register(fastifyMlflowTracing, {
    trackingUri: `http://127.0.0.1:${await closedPort()}`, experimentId: '1', spool: join(root, 'read-only'), logger, flushTimeoutMs: 500, queue: { initialBackoffMs: 10, maxBackoffMs: 50 }
  })
  app.get('/hello', async () => ({ hello: 'world' }))
  t.teardown(async () => await app.close())
  for (let i = 0; i < 20; i++) t.equal((await app.inject('/hello')).statusCode, 200)
  await sleep(500)
  const warnings = logger.calls.warn.filter(w => /spool directory/.test(w.msg ?? ''))
  t.equal(warnings.length, 1, `one warning: ${JSON.stringify(warnings)}`)
  t.match(warnings[0].msg, /not writable: traces stay in memory only/)
  t.ok((app.mlflowTracing.stats().spool?.refused ?? 0) > 0, 'refusals counted')
})
