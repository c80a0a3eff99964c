// The feedback API itself: in-process against a real MLflow server (updates, deletes, values,
// policies, concurrent calls), against the fake server for faults only (retries, the deadline, a
// server without the assessments API), and through the Fastify decorator.
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import Fastify from 'fastify'
import fastifyMlflowTracing, { MemorySink, MlflowClient, MlflowTracing, readTracesFile, TraceFeedback } from '../plugin/index'
import { MlflowFeedbackStore } from '../plugin/feedback/mlflow-store'
import { PendingTraces } from '../plugin/feedback/pending-traces'
import { FakeServer, recordingLogger } from './helpers/fake-server'
import { realMlflow } from './helpers/mlflow'

const quiet = { info () {}, warn () {}, error () {} }

/** Ends a one-span trace of `user` (none if undefined); returns its id. */
function endTrace (tracing: MlflowTracing, user?: string): string {
  const root = tracing.tracer.startSpan('POST /chat')
  if (user !== undefined) root.trace.setMetadata({ 'mlflow.trace.user': user })
  root.end()
  return root.trace.id
}

t.test('on a real server: update, delete, values, policies and concurrent calls', async t => {
  const server = await realMlflow(t)
  const tracing = new MlflowTracing({ logger: quiet }, { MLFLOW_TRACKING_URI: server.uri, MLFLOW_EXPERIMENT_NAME: `feedback-api-${randomUUID()}` })
  t.teardown(async () => { await tracing.shutdown(5000) })
  await tracing.start()
  const feedback = tracing.feedback
  const alices = endTrace(tracing, 'alice')
  const nobodys = endTrace(tracing)

  // Right after the trace ended, before its export: waited for, then two at once make one. (A
  // fresh server's first OTLP request takes seconds: a deadline that is not what this tests.)
  const patient = { timeoutMs: 60_000 }
  const [a, b] = await Promise.all([
    feedback.record('alice', { traceId: alices, value: true }, patient),
    feedback.record('alice', { traceId: alices, value: false, rationale: 'second thoughts' }, patient)
  ])
  t.equal(a.assessmentId, b.assessmentId, 'two concurrent ratings: one assessment')
  t.same([a.created, b.created], [true, false])

  const stars = await feedback.record('alice', { traceId: alices, name: 'stars', value: 4, metadata: { ui: 'web' } })
  const tone = await feedback.record('alice', { traceId: alices, name: 'tone', value: { friendly: true, words: ['clear'] } })
  const label = await feedback.record('alice', { traceId: alices, name: 'label', value: 'meh' })
  t.ok(stars.created && tone.created && label.created, 'another name is another feedback')

  await t.rejects(feedback.record('bob', { traceId: alices, value: true }), { code: 'FST_MLFLOW_NOT_TRACE_USER', statusCode: 403 })
  const reviewer = await feedback.record('bob', { traceId: alices, value: true }, { allowOtherUsers: true })
  t.ok(reviewer.created, 'allowOtherUsers: bob rates alice\'s trace')
  await t.rejects(feedback.record(undefined, { traceId: nobodys, value: true }), { code: 'FST_MLFLOW_NO_TRUSTED_USER', statusCode: 401 })
  await t.rejects(feedback.record(undefined, { traceId: alices, value: true }, { allowAnonymous: true }), { code: 'FST_MLFLOW_NOT_TRACE_USER' },
    'anonymous feedback on a trace with a user is another user\'s')
  const anon1 = await feedback.record(undefined, { traceId: nobodys, value: true }, { allowAnonymous: true })
  const anon2 = await feedback.record(undefined, { traceId: nobodys, value: false }, { allowAnonymous: true })
  t.not(anon1.assessmentId, anon2.assessmentId, 'anonymous feedback is never merged: nobody can tell two anonymous users apart')
  await t.rejects(feedback.record('alice', { traceId: nobodys, value: true }), { code: 'FST_MLFLOW_NOT_TRACE_USER' }, 'a trace without a user is nobody\'s')

  t.equal(await feedback.remove('alice', { traceId: alices, name: 'label' }), true, 'delete: there was one')
  t.equal(await feedback.remove('alice', { traceId: alices, name: 'label' }), false, 'delete again: none left')
  await t.rejects(feedback.record('alice', { traceId: 'tr-0123456789abcdef0123456789abcdef', value: true }), { code: 'FST_MLFLOW_TRACE_NOT_FOUND', statusCode: 404 })

  for (const [input, field] of [
    [{ traceId: 'tr-xyz', value: true }, 'traceId'],
    [{ traceId: alices, value: [1, 2] }, 'value'],
    [{ traceId: alices, value: Number.NaN }, 'value'],
    [{ traceId: alices, value: null }, 'value'],
    [{ traceId: alices, value: true, name: ' ' }, 'name'],
    [{ traceId: alices, value: true, rationale: 5 }, 'rationale'],
    [{ traceId: alices, value: true, metadata: { n: 1 } }, 'metadata']
  ] as const) {
    await t.rejects(feedback.record('alice', input as any), { code: 'FST_MLFLOW_INVALID_FEEDBACK', statusCode: 400, message: new RegExp(`^Invalid feedback ${field}`) }, `bad ${field}`)
  }
  await t.rejects(feedback.record('alice', { traceId: alices, value: true }, { timeoutMs: -1 }), { code: 'FST_MLFLOW_INVALID_OPTION', message: /timeoutMs/ })

  const seen = await server.python(`
import json, mlflow
t = mlflow.get_trace(${JSON.stringify(alices)})
print(json.dumps(sorted([[a.name, a.source.source_type, a.source.source_id, a.value, a.rationale, a.metadata] for a in t.info.assessments], key=str)))
`)
  t.same(seen, [
    ['stars', 'HUMAN', 'alice', 4, null, { ui: 'web' }],
    ['tone', 'HUMAN', 'alice', { friendly: true, words: ['clear'] }, null, null],
    ['user_feedback', 'HUMAN', 'alice', false, 'second thoughts', null],
    ['user_feedback', 'HUMAN', 'bob', true, null, null]
  ].sort((x, y) => String(x).localeCompare(String(y))), "MLflow's client: each value as given, the deleted one gone")
})

async function fake (t: Test): Promise<{ server: FakeServer, feedback: TraceFeedback, traceId: string }> {
  const server = await FakeServer.start()
  t.teardown(async () => await server.close())
  const traceId = `tr-${randomUUID().replace(/-/g, '')}`
  server.route('GET', `/api/3.0/mlflow/traces/${traceId}`, () => ({
    body: { trace: { trace_info: { trace_id: traceId, trace_metadata: { 'mlflow.trace.user': 'alice' }, assessments: [] } } }
  }))
  server.route('POST', `/api/3.0/mlflow/traces/${traceId}/assessments`, req => ({
    body: { assessment: { ...JSON.parse(req.body).assessment, assessment_id: 'a-1' } }
  }))
  const client = new MlflowClient({ host: server.url, auth: async () => undefined, timeoutMs: 1000 })
  return { server, feedback: new TraceFeedback(new MlflowFeedbackStore(client), new PendingTraces()), traceId }
}

t.test('faults: 503 and 429 are retried within the deadline, with the body MLflow wants', async t => {
  const { server, feedback, traceId } = await fake(t)
  server.fail('GET', `/api/3.0/mlflow/traces/${traceId}`, { status: 503, body: { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'busy' } })
  server.fail('POST', `/api/3.0/mlflow/traces/${traceId}/assessments`, { status: 429, headers: { 'retry-after': '0' }, body: { error_code: 'REQUEST_LIMIT_EXCEEDED', message: 'slow down' } })
  const result = await feedback.record('alice', { traceId, value: true, rationale: 'ok' })
  t.same(result, { assessmentId: 'a-1', traceId, name: 'user_feedback', created: true })
  t.equal(server.received('GET', `/api/3.0/mlflow/traces/${traceId}`).length, 3, 'looked up again before each try: a create that reached the server is not repeated')
  const posts = server.received('POST', `/api/3.0/mlflow/traces/${traceId}/assessments`)
  t.equal(posts.length, 2)
  t.same(JSON.parse(posts[1].body), {
    assessment: { assessment_name: 'user_feedback', source: { source_type: 'HUMAN', source_id: 'alice' }, feedback: { value: true }, rationale: 'ok', metadata: {} }
  })
})

t.test('faults: a server that never answers gives FST_MLFLOW_FEEDBACK_UNDELIVERED at the deadline', async t => {
  const { server, feedback, traceId } = await fake(t)
  server.fail('GET', `/api/3.0/mlflow/traces/${traceId}`, 'hang')
  const started = Date.now()
  await t.rejects(feedback.record('alice', { traceId, value: true }, { timeoutMs: 300 }), { code: 'FST_MLFLOW_FEEDBACK_UNDELIVERED', statusCode: 503, message: /within 300 ms/ })
  t.ok(Date.now() - started < 1000, 'the call in flight is aborted at the deadline, not at the client\'s own timeout')
  server.fail('GET', `/api/3.0/mlflow/traces/${traceId}`, ...Array(50).fill({ status: 500, body: { error_code: 'INTERNAL_ERROR', message: 'down' } }))
  await t.rejects(feedback.record('alice', { traceId, value: true }, { timeoutMs: 500 }), { code: 'FST_MLFLOW_FEEDBACK_UNDELIVERED', message: /INTERNAL_ERROR.*gave up at the 500 ms deadline/ })
})

t.test('faults: a try cut off at the deadline still names why the tries before it failed', async t => {
  const { server, feedback, traceId } = await fake(t)
  server.fail('GET', `/api/3.0/mlflow/traces/${traceId}`, { status: 500, body: { error_code: 'INTERNAL_ERROR', message: 'down' } }, 'hang')
  await t.rejects(feedback.record('alice', { traceId, value: true }, { timeoutMs: 1000 }), {
    code: 'FST_MLFLOW_FEEDBACK_UNDELIVERED', message: /INTERNAL_ERROR.*gave up at the 1000 ms deadline after 2 tries, the last cut off/
  })
})

t.test('faults: a server without the assessments API is named as too old', async t => {
  const { server, feedback, traceId } = await fake(t)
  server.route('POST', `/api/3.0/mlflow/traces/${traceId}/assessments`, () => ({ status: 404, body: '<!doctype html><title>404 Not Found</title>', headers: { 'content-type': 'text/html' } }))
  await t.rejects(feedback.record('alice', { traceId, value: true }), { code: 'FST_MLFLOW_UNSUPPORTED_SERVER', message: /needs MLflow 3\.2 \(the assessments API\)/ })
})

t.test('a custom sink stores no feedback: a coded error, not a silent loss', async t => {
  const tracing = new MlflowTracing({ logger: quiet, sink: new MemorySink() })
  const traceId = endTrace(tracing, 'alice')
  await t.rejects(tracing.feedback.record('alice', { traceId, value: true }), { code: 'FST_MLFLOW_FEEDBACK_UNDELIVERED', message: /custom sink/ })
})

t.test('the decorator: the feedback request\'s own user, through the trust-aware chain, traced or not', async t => {
  const file = join(t.testdir(), 'traces.jsonl')
  const logger = recordingLogger()
  const tracing = new MlflowTracing({ logger }, { MLFLOW_TRACES_FILE: file })
  const app = Fastify()
  await app.register(fastifyMlflowTracing, { tracing, trustForwardedIdentity: true })
  app.post('/chat', async request => ({ traceId: request.mlflow.traceId }))
  app.post<{ Body: { traceId: string } }>('/feedback', { config: { mlflow: false } }, async request =>
    await app.mlflowTracing.feedback(request, { traceId: request.body.traceId, value: true }))
  app.delete<{ Body: { traceId: string } }>('/feedback', async request =>
    ({ deleted: await app.mlflowTracing.deleteFeedback(request, { traceId: request.body.traceId }) }))
  t.teardown(async () => { await app.close(); await tracing.shutdown(1000) })

  const chat = await app.inject({ method: 'POST', url: '/chat', headers: { 'x-forwarded-email': 'alice@example.com' } })
  const { traceId } = chat.json()
  const rated = await app.inject({ method: 'POST', url: '/feedback', headers: { 'x-forwarded-email': 'alice@example.com' }, payload: { traceId } })
  t.equal(rated.statusCode, 200, 'an untraced route: the user from the same chain')
  t.match(rated.json(), { traceId, name: 'user_feedback', created: true })
  const spoofed = await app.inject({ method: 'POST', url: '/feedback', headers: { 'x-forwarded-email': 'mallory@example.com' }, payload: { traceId } })
  t.equal(spoofed.statusCode, 403)
  const deleted = await app.inject({ method: 'DELETE', url: '/feedback', headers: { 'x-forwarded-email': 'alice@example.com' }, payload: { traceId } })
  t.same(deleted.json(), { deleted: true })
  t.same(readTracesFile(file).find(i => i.trace_id === traceId)?.assessments, [], 'deleted from the file too')
})
