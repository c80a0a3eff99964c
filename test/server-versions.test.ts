// The example agent against every MLflow server the run is given (listedServers(): each claimed
// version under `npm test`, one version of the matrix under `npm run test:servers`), its traces
// read back with THAT version's own Python client, and the plugin's own search on each server.
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { findTraces, MlflowTracing, type FastifyMlflowTracingOptions } from '../plugin/index'
import { bareEnv, buildOnce, repoRoot, runTracesCli } from './helpers/example-app'
import { listedServers, type RealMlflow } from './helpers/mlflow'
import { withEnv } from './helpers/plugin-app'

/** The oldest server with the V3 trace routes the plugin needs. */
const MINIMUM = '3.2.0'
const ENVIRONMENT = 'staging'
const AGENT_VERSION = '4.5.6'
const LLM_SPAN = 'chat fake-chat-1'
const quiet = { info () {}, warn () {}, error () {} }

type BuildApp = (options?: FastifyServerOptions, tracing?: FastifyMlflowTracingOptions) => Promise<FastifyInstance>
let buildApp: BuildApp

t.before(async () => {
  t.comment(`example app: ${await buildOnce()}`)
  // The built app: it imports the plugin by its package name, which resolves to dist/.
  buildApp = (require(join(repoRoot, 'dist', 'example-app', 'app.js')) as { buildApp: BuildApp }).buildApp
})

/** The example app in this process, deployed as ENVIRONMENT / AGENT_VERSION, tracing to a new experiment. */
async function exampleApp (t: Test, mlflow: RealMlflow, experimentName: string): Promise<FastifyInstance> {
  withEnv(t, { APP_ENVIRONMENT: ENVIRONMENT, AGENT_VERSION })
  return await buildApp({ logger: false }, { trackingUri: mlflow.uri, experimentName, trustForwardedIdentity: true })
}

/** POSTs a question as the user in `headers`; returns the trace id. */
async function ask (t: Test, app: FastifyInstance, url: string, headers: Record<string, string>): Promise<string> {
  const res = await app.inject({ method: 'POST', url, headers, payload: { message: 'What is MLflow?' } })
  t.equal(res.statusCode, 200, `${url} answers 200`)
  const traceId = res.headers['x-mlflow-trace-id']
  t.match(traceId, /^tr-[0-9a-f]{32}$/)
  return traceId as string
}

/** Closes the app, which flushes its traces; every one must have been exported. */
async function closeExported (t: Test, app: FastifyInstance, count: number): Promise<void> {
  const { tracing } = app.mlflowTracing
  await app.close()
  const stats = tracing.stats()
  t.equal(stats.exported, count, `${count} traces exported`)
  t.same(Object.entries(stats.dropped).filter(([, n]) => n > 0), [], 'none dropped')
}

interface SeenTrace {
  trace_id: string
  client_request_id: string | null
  metadata: Record<string, string>
  root: string | null
  spans: string[]
}

/** Searches with the server's own Python client; each filter's traces sorted by id. */
async function pythonSearch (mlflow: RealMlflow, experimentName: string, filters: Record<string, string>): Promise<Record<string, SeenTrace[]>> {
  return await mlflow.python(`
import json, mlflow
exp = mlflow.get_experiment_by_name(${JSON.stringify(experimentName)})
def describe(x):
    root = x.data._get_root_span()
    return {"trace_id": x.info.trace_id, "client_request_id": x.info.client_request_id,
            "metadata": dict(x.info.trace_metadata), "root": root.name if root else None,
            "spans": sorted(s.name for s in x.data.spans)}
def search(f):
    found = mlflow.search_traces(experiment_ids=[exp.experiment_id], filter_string=f, return_type="list")
    return sorted((describe(x) for x in found), key=lambda d: d["trace_id"])
print(json.dumps({name: search(f) for name, f in json.loads(${JSON.stringify(JSON.stringify(filters))}).items()}))
`)
}

for (const server of listedServers()) {
  t.test(server.name, async t => {
    const mlflow = await server.connect(t)
    const { compareVersions } = await import('../scripts/ensure-mlflow-venv.mjs')
    if (compareVersions(mlflow.version, MINIMUM) < 0) {
      const outcome = await exampleApp(t, mlflow, `versions-${randomUUID()}`)
        .then(async app => { await app.close(); return 'the app started' }, (err: Error) => err)
      t.match(outcome, { message: /MLflow 3\.2/ }, `start-up refuses MLflow ${mlflow.version}, naming 3.2 as the minimum`)
      return
    }

    t.test(`the example app's traces, read back by MLflow ${mlflow.version}'s Python client`, async t => {
      const experimentName = `versions-${randomUUID()}`
      const app = await exampleApp(t, mlflow, experimentName)
      const user = `user-${randomUUID()}@example.com`
      const session = `conv-${randomUUID()}`
      const requestId = `req-${randomUUID()}`
      const headers = { 'x-forwarded-email': user, 'x-session-id': session }
      const chat = await ask(t, app, '/chat', { ...headers, 'x-request-id': requestId })
      const stream = await ask(t, app, '/chat/stream', { ...headers, 'x-request-id': `${requestId}-stream` })
      await closeExported(t, app, 2)

      const seen = await pythonSearch(mlflow, experimentName, {
        user: `metadata.\`mlflow.trace.user\` = '${user}'`,
        session: `metadata.\`mlflow.trace.session\` = '${session}'`,
        environment: `metadata.\`mlflow.source.type\` = '${ENVIRONMENT}'`
      })
      for (const [by, found] of Object.entries(seen)) t.same(found.map(x => x.trace_id), [chat, stream].sort(), `found by ${by}`)
      const traceOf = (id: string): SeenTrace | undefined => seen.user.find(x => x.trace_id === id)
      const metadata = { 'mlflow.trace.user': user, 'mlflow.trace.session': session, 'mlflow.source.type': ENVIRONMENT, agent_version: AGENT_VERSION }
      t.match(traceOf(chat), { client_request_id: requestId, metadata }, '/chat: client_request_id and metadata')
      t.match(traceOf(stream), { client_request_id: `${requestId}-stream`, metadata }, '/chat/stream: client_request_id and metadata')
      t.equal(traceOf(chat)?.root, 'POST /chat', '/chat: the root span')
      t.same(traceOf(chat)?.spans, ['POST /chat', 'retrieve notes', LLM_SPAN].sort(), '/chat: its spans')
      t.equal(traceOf(stream)?.root, 'POST /chat/stream', '/chat/stream: the root span')
      t.same(traceOf(stream)?.spans, ['POST /chat/stream', 'retrieve notes', LLM_SPAN, 'stream answer'].sort(), '/chat/stream: its spans')
    })

    t.test('findTraces and the traces CLI find exactly the right traces', async t => {
      const experimentName = `versions-${randomUUID()}`
      const app = await exampleApp(t, mlflow, experimentName)
      // Quotes of both kinds need LIKE, and `both_"q` is what that LIKE widens to.
      const users = ["o'brien", 'both\'"q', 'both_"q', 'plain']
      const asked = new Map<string, { traceId: string, requestId: string }>()
      for (const [i, user] of users.entries()) {
        const requestId = i === 1 ? `req'"${randomUUID()}` : `req-${randomUUID()}`
        asked.set(user, { traceId: await ask(t, app, '/chat', { 'x-forwarded-email': user, 'x-request-id': requestId }), requestId })
      }
      await closeExported(t, app, users.length)

      const tracing = new MlflowTracing({ trackingUri: mlflow.uri, experimentName, logger: quiet }, {})
      const client = tracing.client!
      const experimentIds = [await tracing.experimentId() as string]
      const ids = async (query: Parameters<typeof findTraces>[2]): Promise<string[]> =>
        (await findTraces(client, experimentIds, query)).map(x => x.trace_id)
      for (const [user, { traceId, requestId }] of asked) {
        t.same(await ids({ user }), [traceId], `by user ${JSON.stringify(user)}`)
        t.same(await ids({ clientRequestId: requestId }), [traceId], `by client_request_id of ${JSON.stringify(user)}`)
      }
      const both = asked.get('both\'"q')!
      t.same(await ids({ user: 'both\'"q', clientRequestId: both.requestId, environment: ENVIRONMENT }), [both.traceId], 'user, request id and environment at once')
      t.same((await ids({ environment: ENVIRONMENT })).sort(), [...asked.values()].map(x => x.traceId).sort(), 'by environment: all of them')
      t.same(await ids({ user: 'plain', clientRequestId: both.requestId }), [], 'conditions that exclude each other find nothing')

      // A refused clause is remembered: the next search is one request, not a 400 and a retry.
      const sent: Array<string | undefined> = []
      const search = client.searchTraces.bind(client)
      client.searchTraces = async req => { sent.push(req.filter); return await search(req) }
      t.same(await ids({ clientRequestId: both.requestId, user: 'both\'"q' }), [both.traceId])
      t.equal(sent.length, 1, `one search request (${JSON.stringify(sent)})`)
      await tracing.shutdown(1000)

      const cli = await runTracesCli(['--request-id', both.requestId, '--json'], bareEnv({ MLFLOW_TRACKING_URI: mlflow.uri, MLFLOW_EXPERIMENT_NAME: experimentName }))
      t.equal(cli.code, 0, `the CLI exits 0 ${cli.stderr}`)
      t.same((JSON.parse(cli.stdout) as Array<{ trace_id: string }>).map(x => x.trace_id), [both.traceId], 'the CLI --request-id finds that trace only')
    })
  })
}
