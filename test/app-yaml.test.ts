// app.yaml.example, the Databricks Apps configuration users copy: its shape, that every variable it
// sets is one the code reads, that it holds no secrets, and that its command works when run the
// way Databricks runs it, with what Databricks injects emulated and a fake workspace behind it.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { bareEnv, buildOnce, postJson, repoRoot, startApp } from './helpers/example-app'
import { closedPort, FakeServer } from './helpers/fake-server'

interface EnvEntry { name: string, value?: string, valueFrom?: string }
interface AppYaml { command: unknown, env: EnvEntry[] }

const text = readFileSync(join(repoRoot, 'app.yaml.example'), 'utf8')
const appYaml = parse(text) as AppYaml

/** The .ts sources under plugin/ and example-app/, comments removed (a name must be read by code). */
function codeSources (): Array<{ file: string, code: string }> {
  const walk = (dir: string): string[] => readdirSync(join(repoRoot, dir), { withFileTypes: true }).flatMap(e =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [])
  return [...walk('plugin'), ...walk('example-app')].map(file => ({
    file,
    code: readFileSync(join(repoRoot, file), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .split('\n').filter(line => !line.trimStart().startsWith('//')).join('\n')
  }))
}

t.test('app.yaml.example: shape, variables and secrets', async t => {
  t.ok(Array.isArray(appYaml.command), 'command is an array (run without a shell)')
  const command = appYaml.command as unknown[]
  t.ok(command.length >= 2 && command.every(a => typeof a === 'string'), 'of strings')
  t.same(command, ['node', 'dist/example-app/server.js'], 'it runs the built example server')
  t.notOk(command.some(a => /[$&|;`]/.test(a as string)), 'nothing a shell would have to interpret')

  t.ok(Array.isArray(appYaml.env) && appYaml.env.length > 0, 'env is a list')
  const sources = codeSources()
  for (const entry of appYaml.env) {
    t.match(entry.name, /^[A-Z][A-Z0-9_]*$/, `${entry.name}: a variable name`)
    t.equal(Object.keys(entry).filter(k => k === 'value' || k === 'valueFrom').length, 1, `${entry.name}: exactly one of value / valueFrom`)
    t.same(Object.keys(entry).filter(k => !['name', 'value', 'valueFrom'].includes(k)), [], `${entry.name}: no other keys`)
    if ('value' in entry) t.type(entry.value, 'string', `${entry.name}: the value is a string (quoted)`)
    const literal = new RegExp(`(['"\`])${entry.name}\\1|\\.${entry.name}\\b`)
    const readers = sources.filter(s => literal.test(s.code)).map(s => s.file)
    t.ok(readers.length > 0, `${entry.name} is read by ${readers.join(', ') || 'no source under plugin/ or example-app/'}`)
  }

  const byName = new Map(appYaml.env.map(e => [e.name, e]))
  t.same(byName.get('MLFLOW_EXPERIMENT_ID'), { name: 'MLFLOW_EXPERIMENT_ID', valueFrom: 'experiment' }, 'MLFLOW_EXPERIMENT_ID comes from the experiment resource (valueFrom)')
  t.equal(byName.get('MLFLOW_TRACKING_URI')?.value, 'databricks')
  t.equal(byName.get('APP_ENVIRONMENT')?.value, 'production')

  for (const entry of appYaml.env) {
    t.notMatch(entry.name, /TOKEN|SECRET|PASSWORD|CLIENT_ID|API_KEY|PRIVATE/i, `${entry.name}: not a credential setting`)
    if (entry.value !== undefined) {
      t.notMatch(entry.value, /^dapi[0-9a-f]{20,}|^dose[0-9a-f]{20,}|^[A-Za-z0-9+/=_-]{32,}$|^eyJ/, `${entry.name}: the value does not look like a secret`)
    }
  }
  // The comments may name DATABRICKS_TOKEN (to say: do not set it); no line may set it.
  t.notMatch(text, /^\s*-?\s*name:\s*["']?(DATABRICKS_TOKEN|DATABRICKS_CLIENT_SECRET|DATABRICKS_CLIENT_ID)\b/m, 'no credential is set')
})

t.test('the command works when run locally as Databricks would run it', async t => {
  t.comment(`example app: ${await buildOnce()}`)
  const command = appYaml.command as string[]

  // A fake Databricks workspace: OAuth M2M, the experiment, StartTraceV3 (the default handler
  // echoes trace_info), credentials-for-data-upload, and the signed URL's storage.
  const fake = await FakeServer.start()
  t.teardown(async () => await fake.close())
  const experimentId = String(100000 + Math.floor(Math.random() * 900000))
  const clientId = `sp-${randomUUID()}`
  const clientSecret = `dose${randomUUID().replace(/-/g, '')}`
  const accessToken = `oauth-${randomUUID()}`
  fake.route('POST', '/oidc/v1/token', () => ({ body: { access_token: accessToken, token_type: 'Bearer', expires_in: 3600, scope: 'all-apis' } }))
  fake.route('GET', '/api/2.0/mlflow/experiments/get', req => ({
    body: { experiment: { experiment_id: req.query.get('experiment_id'), name: '/Users/sp/example', lifecycle_stage: 'active', artifact_location: `dbfs:/databricks/mlflow-tracking/${experimentId}` } }
  }))
  fake.route('GET', '/api/2.0/mlflow/traces/*', req => {
    const m = /^\/api\/2\.0\/mlflow\/traces\/([^/]+)\/credentials-for-data-upload$/.exec(req.path)
    if (m === null) return { status: 404, body: { error_code: 'ENDPOINT_NOT_FOUND', message: req.path } }
    return { body: { credential_info: { type: 'AWS_PRESIGNED_URL', signed_uri: `${fake.url}/bucket/${m[1]}/traces.json?X-Amz-Signature=abc123`, headers: [] } } }
  })
  fake.route('PUT', '/bucket/*', () => ({ status: 200, body: '' }))

  const port = await closedPort()
  const literalEnv = Object.fromEntries(appYaml.env.filter(e => e.value !== undefined).map(e => [e.name, e.value as string]))
  const valueFromEnv = Object.fromEntries(appYaml.env.filter(e => e.valueFrom !== undefined).map(e => {
    t.equal(e.valueFrom, 'experiment', `${e.name} comes from the experiment resource`)
    return [e.name, experimentId]
  }))
  const env = bareEnv({
    ...literalEnv,
    ...valueFromEnv,
    // What Databricks Apps inject.
    DATABRICKS_APP_NAME: 'example',
    DATABRICKS_APP_PORT: String(port),
    DATABRICKS_HOST: fake.url,
    DATABRICKS_CLIENT_ID: clientId,
    DATABRICKS_CLIENT_SECRET: clientSecret
  })
  const app = await startApp(t, env, command)
  t.equal(app.port, port, 'it listens on DATABRICKS_APP_PORT')
  t.match(app.logs().find(l => typeof l.destination === 'string')?.destination, `MLflow at ${fake.url}`, 'the start-up line names the workspace')

  const session = `conv-${randomUUID()}`
  const requestId = `req-${randomUUID()}`
  const obo = 'SECRET-OBO-123'
  const res = await postJson(`${app.url}/chat`, { message: 'What is MLflow?' }, {
    'X-Forwarded-Email': 'alice@example.com',
    'x-session-id': session,
    'X-Request-Id': requestId,
    'X-Forwarded-Access-Token': obo
  })
  t.equal(res.status, 200)
  const traceId = res.headers.get('x-mlflow-trace-id') as string
  t.match(traceId, /^tr-[0-9a-f]{32}$/)
  t.equal((await res.json() as { traceId: string }).traceId, traceId)

  t.same(await app.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM: closed, flushed, exit 0')
  t.equal(app.stderr(), '', 'nothing on stderr')
  t.notMatch(app.stdout(), /"level":(40|50)/, 'no warning or error logged')

  // OAuth M2M with the injected service principal.
  const tokenCalls = fake.received('POST', '/oidc/v1/token')
  t.equal(tokenCalls.length, 1, 'one token request')
  t.equal(tokenCalls[0]?.headers.authorization, 'Basic ' + Buffer.from(`${clientId}:${clientSecret}`).toString('base64'), 'Basic auth with the client id and secret')
  t.same(Object.fromEntries(new URLSearchParams(tokenCalls[0]?.body)), { grant_type: 'client_credentials', scope: 'all-apis' })

  const apiCalls = fake.requests.filter(r => r.path.startsWith('/api/'))
  t.ok(apiCalls.length >= 3, `API calls: ${apiCalls.map(r => `${r.method} ${r.path}`).join(', ')}`)
  t.ok(apiCalls.every(r => r.headers.authorization === `Bearer ${accessToken}`), 'every API call carries the OAuth token')
  t.equal(fake.received('GET', '/api/2.0/mlflow/experiments/get')[0]?.query.get('experiment_id'), experimentId, 'the experiment from valueFrom is checked')

  // StartTraceV3: who, which conversation, which request, which deployment.
  const starts = fake.received('POST', '/api/3.0/mlflow/traces')
  t.equal(starts.length, 1, 'one StartTraceV3')
  const info = JSON.parse(starts[0]?.body ?? '{}').trace?.trace_info
  t.equal(info?.trace_id, traceId, 'for the trace the response named')
  t.equal(info?.client_request_id, requestId, 'client_request_id is the X-Request-Id')
  t.equal(info?.trace_location?.mlflow_experiment?.experiment_id, experimentId)
  t.match(info?.trace_metadata, {
    'mlflow.trace.user': 'alice@example.com',
    user_source: 'x-forwarded-email',
    'mlflow.trace.session': session,
    'mlflow.source.type': literalEnv.APP_ENVIRONMENT,
    agent_version: literalEnv.AGENT_VERSION,
    'mlflow.source.name': 'example'
  }, 'trace metadata: user trusted because DATABRICKS_APP_NAME is set, session, deployment')
  t.equal(info?.trace_metadata?.['mlflow.source.type'], 'production')

  // The span document goes to the signed URL, without the workspace token.
  const creds = fake.received('GET', '/api/2.0/mlflow/traces/*')
  t.same(creds.map(r => r.path), [`/api/2.0/mlflow/traces/${traceId}/credentials-for-data-upload`])
  const puts = fake.received('PUT', '/bucket/*')
  t.equal(puts.length, 1, 'one PUT of the spans')
  t.equal(puts[0]?.url, `/bucket/${traceId}/traces.json?X-Amz-Signature=abc123`)
  t.notOk(puts[0] !== undefined && 'authorization' in puts[0].headers, 'no Authorization header on the signed URL')
  const spans = JSON.parse(puts[0]?.body ?? '{"spans":[]}').spans as Array<{ name: string }>
  t.same(spans.map(s => s.name), ['POST /chat', 'retrieve notes', 'chat fake-chat-1'])

  // Secrets go nowhere they should not.
  t.same(fake.requests.filter(r => r.body.includes(obo)).map(r => `${r.method} ${r.url}`), [], 'the on-behalf-of token is in no request body')
  t.same(fake.requests.filter(r => JSON.stringify(r.headers).includes(obo)).map(r => `${r.method} ${r.url}`), [], 'nor in any request header')
  t.same(fake.requests.filter(r => r.body.includes(clientSecret)).map(r => `${r.method} ${r.url}`), [], 'the client secret is in no request body')
  t.notOk(app.stdout().includes(obo) || app.stdout().includes(clientSecret), 'neither is in the logs')
})
