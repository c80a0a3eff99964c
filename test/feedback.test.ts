// End-user feedback through the example app's POST /feedback, as its users run it (built, its own
// process, real HTTP), stored on every claimed MLflow server and in the embedded default's file,
// and read back with MLflow's Python client.
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { bareEnv, buildOnce, postJson, runTracesCli, startApp, type RunningApp } from './helpers/example-app'
import { listedServers, realMlflow, type RealMlflow } from './helpers/mlflow'

const ALICE = { 'X-Forwarded-Email': 'alice@example.com' }
const MALLORY = { 'X-Forwarded-Email': 'mallory@example.com' }
const UNKNOWN = 'tr-0123456789abcdef0123456789abcdef'

t.before(async () => {
  t.comment(`example app: ${await buildOnce()}`)
})

/** What MLflow's Python client makes of the trace's assessments. */
const READ_ASSESSMENTS = `
def described(assessments):
    return [{"name": a.name, "source_type": a.source.source_type, "source_id": a.source.source_id,
             "value": a.value, "rationale": a.rationale, "id": a.assessment_id,
             "is_feedback": isinstance(a, Feedback), "created": a.create_time_ms} for a in assessments]
`

/**
 * alice chats, rates her answer up at once (the trace may not be exported yet), then down with a
 * comment; mallory, nobody, an unknown trace and malformed bodies are refused. Returns the trace id
 * and the assessment id.
 */
async function rate (t: Test, app: RunningApp): Promise<{ traceId: string, assessmentId: string }> {
  const chat = await postJson(`${app.url}/chat`, { message: 'What is MLflow?' }, ALICE)
  t.equal(chat.status, 200)
  const traceId = chat.headers.get('x-mlflow-trace-id') as string

  const up = await postJson(`${app.url}/feedback`, { traceId, rating: 'up', comment: 'spot on' }, ALICE)
  t.equal(up.status, 200, 'alice rates up right after her request: 200')
  const first = await up.json() as { assessmentId: string, created: boolean }
  t.match(first, { assessmentId: /^a-[0-9a-f]{32}$/, created: true })
  const down = await postJson(`${app.url}/feedback`, { traceId, rating: 'down', comment: 'too vague' }, ALICE)
  t.equal(down.status, 200, 'then down: 200')
  t.same(await down.json(), { assessmentId: first.assessmentId, created: false }, 'the same assessment, updated')

  const mallory = await postJson(`${app.url}/feedback`, { traceId, rating: 'up' }, MALLORY)
  t.equal(mallory.status, 403, "mallory on alice's trace: 403")
  t.match(await mallory.json(), { code: 'FST_MLFLOW_NOT_TRACE_USER' })
  const nobody = await postJson(`${app.url}/feedback`, { traceId, rating: 'up' })
  t.equal(nobody.status, 401, 'no trusted user: 401')
  t.match(await nobody.json(), { code: 'FST_MLFLOW_NO_TRUSTED_USER' })

  const unknown = await postJson(`${app.url}/feedback`, { traceId: UNKNOWN, rating: 'up' }, ALICE)
  t.equal(unknown.status, 404, 'an unknown trace: 404')
  t.match(await unknown.json(), { code: 'FST_MLFLOW_TRACE_NOT_FOUND' })
  for (const body of [{ traceId, rating: 'meh' }, { traceId: 'tr-123', rating: 'up' }, { rating: 'up' }, { traceId, rating: 'up', comment: { text: 'hi' } }]) {
    const res = await postJson(`${app.url}/feedback`, body, ALICE)
    t.equal(res.status, 400, `malformed ${JSON.stringify(body)}: 400`)
  }
  const notJson = await fetch(`${app.url}/feedback`, { method: 'POST', headers: { 'content-type': 'application/json', ...ALICE }, body: '{"traceId":' })
  t.equal(notJson.status, 400, 'a body that is not JSON: 400')
  return { traceId, assessmentId: first.assessmentId }
}

/**
 * A freshly started MLflow server answers its first OTLP request only after seconds (it loads its
 * span ingest then), near the example's 10 s feedback deadline on a busy machine: one trace is
 * exported and rated first, retrying a 503, so that the checked ratings meet a server in its stride.
 */
async function warmUp (t: Test, app: RunningApp): Promise<void> {
  const chat = await postJson(`${app.url}/chat`, { message: 'warm-up' }, { 'X-Forwarded-Email': 'warm@example.com' })
  const traceId = chat.headers.get('x-mlflow-trace-id') as string
  for (let tries = 1; ; tries++) {
    const res = await postJson(`${app.url}/feedback`, { traceId, rating: 'up' }, { 'X-Forwarded-Email': 'warm@example.com' })
    if (res.status === 200) return t.comment(`warm-up rating stored after ${tries} tries`)
    t.equal(res.status, 503, 'the warm-up rating waits for its export at most')
    if (tries === 6) throw new Error('the server stored no warm-up feedback within six 10 s deadlines')
  }
}

/** Exactly one feedback: alice's, HUMAN, user_feedback, False, her comment. */
function checkOne (t: Test, seen: any[], assessmentId: string): void {
  t.match(seen, [{
    id: assessmentId, name: 'user_feedback', source_type: 'HUMAN', source_id: 'alice@example.com', value: false, rationale: 'too vague', is_feedback: true
  }], "MLflow's client: one feedback from alice, value False, her comment as rationale")
  t.equal(seen.length, 1, 'exactly one (mallory stored nothing)')
  t.ok(seen[0].created > Date.now() - 10 * 60_000, 'a real creation time')
}

for (const { name, connect } of listedServers()) {
  t.test(`feedback on ${name}: stored once, updated, refused for another user`, async t => {
    const server: RealMlflow = await connect(t)
    const experimentName = `feedback-${randomUUID()}`
    const app = await startApp(t, bareEnv({ PORT: '0', MLFLOW_TRACKING_URI: server.uri, MLFLOW_EXPERIMENT_NAME: experimentName, TRUST_FORWARDED_IDENTITY: 'true' }))
    await warmUp(t, app)
    const { traceId, assessmentId } = await rate(t, app)
    t.same(await app.stop('SIGTERM'), { code: 0, signal: null })
    t.notMatch(app.stdout(), /"level":50/, 'no error logged')

    const seen = await server.python(`
import json, mlflow
from mlflow.entities import Feedback
${READ_ASSESSMENTS}
print(json.dumps(described(mlflow.get_trace(${JSON.stringify(traceId)}).info.assessments)))
`)
    checkOne(t, seen, assessmentId)

    const cli = await runTracesCli(['--user', 'alice@example.com'], bareEnv({ MLFLOW_TRACKING_URI: server.uri, MLFLOW_EXPERIMENT_NAME: experimentName }))
    t.equal(cli.code, 0)
    t.match(cli.stdout.split('\n').find(l => l.includes(traceId)), 'user_feedback=false by alice@example.com ("too vague")', 'the traces CLI shows the feedback')
  })
}

t.test('feedback with the embedded default: lines of the traces file that MLflow reads', async t => {
  const file = join(t.testdir(), 'traces.jsonl')
  const app = await startApp(t, bareEnv({ PORT: '0', MLFLOW_TRACES_FILE: file, TRUST_FORWARDED_IDENTITY: 'true' }))
  const { traceId, assessmentId } = await rate(t, app)
  t.same(await app.stop('SIGTERM'), { code: 0, signal: null })
  t.equal(app.stderr(), '')

  // The file's assessment lines folded onto the trace as a server would return it, then parsed by MLflow.
  const server = await realMlflow(t)
  const seen = await server.python(`
import json
from mlflow.entities import Trace, Feedback
${READ_ASSESSMENTS}
traces, assessments = {}, {}
for line in open(${JSON.stringify(file)}):
    doc = json.loads(line)
    if "info" in doc: traces[doc["info"]["trace_id"]] = doc
    elif "assessment" in doc: assessments[doc["assessment"]["assessment_id"]] = doc["assessment"]
    else: assessments.pop(doc["deleted_assessment"]["assessment_id"])
doc = traces[${JSON.stringify(traceId)}]
doc["info"]["assessments"] = [a for a in assessments.values() if a["trace_id"] == ${JSON.stringify(traceId)}]
print(json.dumps(described(Trace.from_dict(doc).info.assessments)))
`)
  checkOne(t, seen, assessmentId)

  const cli = await runTracesCli(['--user', 'alice@example.com'], bareEnv({ MLFLOW_TRACES_FILE: file }))
  t.equal(cli.code, 0)
  t.match(cli.stdout.split('\n').find(l => l.includes(traceId)), 'user_feedback=false by alice@example.com ("too vague")', 'the traces CLI shows the feedback')
})
