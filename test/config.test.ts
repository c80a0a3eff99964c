import t from 'tap'
import { resolveDestination } from '../plugin/export/config'
import { MlflowTracing } from '../plugin/tracing'

const invalid = (setting: RegExp): { code: string, message: RegExp } => ({ code: 'FST_MLFLOW_INVALID_OPTION', message: setting })

t.test('no tracking URI: the embedded default, a local JSON Lines file', async t => {
  const dest = resolveDestination({}, {})
  t.equal(dest.kind, 'file')
  t.match(dest, { path: /mlflow-traces\.jsonl$/ })
  t.match(resolveDestination({}, { MLFLOW_TRACES_FILE: '/tmp/x.jsonl' }), { kind: 'file', path: '/tmp/x.jsonl' })
})

t.test('tracking URI schemes', async t => {
  t.match(resolveDestination({}, { MLFLOW_TRACKING_URI: 'http://localhost:5000/', MLFLOW_EXPERIMENT_ID: '1' }),
    { kind: 'mlflow', host: 'http://localhost:5000', databricks: false, authKind: 'none', experimentId: '1' })
  t.throws(() => resolveDestination({ trackingUri: 'ftp://x', experimentId: '1' }, {}), invalid(/trackingUri \(MLFLOW_TRACKING_URI\).*ftp:/))
  try { resolveDestination({ trackingUri: 'ftp://x', experimentId: '1' }, {}) } catch (err) { t.type(err, TypeError, 'a TypeError, as Fastify plugins throw for bad options') }
  t.throws(() => resolveDestination({ trackingUri: 'file:./mlruns', experimentId: '1' }, {}), invalid(/MLFLOW_TRACKING_URI.*file:/))
  t.throws(() => resolveDestination({ trackingUri: 'not a url', experimentId: '1' }, {}), invalid(/MLFLOW_TRACKING_URI/))
  t.throws(() => resolveDestination({ trackingUri: 'databricks://profile', experimentId: '1' }, {}), invalid(/profiles/))
})

t.test('an experiment is required with a server, and an id wins over a name', async t => {
  t.throws(() => resolveDestination({ trackingUri: 'http://h' }, {}), invalid(/MLFLOW_EXPERIMENT_ID/))
  t.throws(() => resolveDestination({ trackingUri: 'http://h', experimentId: '1 OR 2' }, {}), invalid(/experimentId/))
  t.match(resolveDestination({ trackingUri: 'http://h' }, { MLFLOW_EXPERIMENT_NAME: 'agents' }), { experimentName: 'agents', experimentId: undefined })
  t.match(resolveDestination({ trackingUri: 'http://h', experimentId: '7', experimentName: 'agents' }, {}), { experimentId: '7', experimentName: undefined })
})

t.test('OSS auth: basic, then bearer, then none; options win over env', async t => {
  const base = { MLFLOW_TRACKING_URI: 'http://h', MLFLOW_EXPERIMENT_ID: '1' }
  const basic = resolveDestination({}, { ...base, MLFLOW_TRACKING_USERNAME: 'u', MLFLOW_TRACKING_PASSWORD: 'p', MLFLOW_TRACKING_TOKEN: 'tok' })
  t.equal(basic.kind === 'mlflow' && await basic.auth(), 'Basic ' + Buffer.from('u:p').toString('base64'))
  const bearer = resolveDestination({ trackingToken: 'opt' }, { ...base, MLFLOW_TRACKING_TOKEN: 'env' })
  t.equal(bearer.kind === 'mlflow' && await bearer.auth(), 'Bearer opt')
  t.throws(() => resolveDestination({}, { ...base, MLFLOW_TRACKING_USERNAME: 'u' }), invalid(/MLFLOW_TRACKING_PASSWORD/))
  t.match(resolveDestination({}, { ...base, MLFLOW_WORKSPACE: 'team-a' }), { workspace: 'team-a' })
})

t.test('Databricks: host and credentials are required and named', async t => {
  const base = { MLFLOW_TRACKING_URI: 'databricks', MLFLOW_EXPERIMENT_ID: '1' }
  t.throws(() => resolveDestination({}, base), invalid(/DATABRICKS_HOST/))
  t.throws(() => resolveDestination({}, { ...base, DATABRICKS_HOST: 'x.cloud.databricks.com' }), invalid(/DATABRICKS_CLIENT_ID/))
  t.throws(() => resolveDestination({}, { ...base, DATABRICKS_HOST: 'x', DATABRICKS_CLIENT_ID: 'id' }), invalid(/DATABRICKS_CLIENT_SECRET/))
  t.match(resolveDestination({}, { ...base, DATABRICKS_HOST: 'x.cloud.databricks.com', DATABRICKS_TOKEN: 'dapi' }),
    { host: 'https://x.cloud.databricks.com', databricks: true, authKind: 'databricks-pat' })
  t.match(resolveDestination({}, { ...base, DATABRICKS_HOST: 'https://x/', DATABRICKS_CLIENT_ID: 'id', DATABRICKS_CLIENT_SECRET: 's' }),
    { host: 'https://x', authKind: 'databricks-oauth' })
})

t.test('numbers are validated', async t => {
  t.throws(() => resolveDestination({ requestTimeoutMs: -1 }, {}), invalid(/requestTimeoutMs/))
  t.throws(() => resolveDestination({}, { MLFLOW_HTTP_REQUEST_TIMEOUT: 'soon' }), invalid(/MLFLOW_HTTP_REQUEST_TIMEOUT/))
})

t.test('queue bounds are checked at registration, each named', async t => {
  t.throws(() => new MlflowTracing({ queue: { maxTraces: 0 } }, {}), invalid(/queue\.maxTraces: expected a positive integer, got 0/))
  t.throws(() => new MlflowTracing({ queue: { concurrency: 2.5 } }, {}), invalid(/queue\.concurrency/))
  t.throws(() => new MlflowTracing({ queue: 'fast' as never }, {}), invalid(/queue: expected an object/))
  t.throws(() => new MlflowTracing({ queue: { maxTraces: 0 }, sink: { export: async () => {} } }, {}), invalid(/queue\.maxTraces/), 'with a custom sink too')
  t.doesNotThrow(() => new MlflowTracing({ queue: { maxBytes: 1024, maxAttempts: 1 } }, {}))
})

t.test('the client is built from the same settings and says where traces go', async t => {
  const tracing = new MlflowTracing({ trackingUri: 'http://127.0.0.1:1', experimentId: '5' }, {})
  t.equal(tracing.destination, 'MLflow at http://127.0.0.1:1, experiment 5')
  t.throws(() => new MlflowTracing({ trackingUri: 'mlflow://x', experimentId: '1' }, {}), invalid(/MLFLOW_TRACKING_URI/))
})
