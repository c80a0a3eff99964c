import { ROOT_CONTEXT, trace } from '@opentelemetry/api'
import t, { type Test } from 'tap'
import { databricksOAuth } from '../plugin/export/auth'
import { resolveDestination } from '../plugin/export/config'
import type { QueueOptions } from '../plugin/export/queue'
import { MlflowTracing, type MlflowTracingOptions } from '../plugin/tracing'
import { FakeServer, recordingLogger, type RecordedRequest } from './helpers/fake-server'

const TOKEN = '/oidc/v1/token'
const TRACES = '/api/3.0/mlflow/traces'
const EXPERIMENT = '/api/2.0/mlflow/experiments/get'
const CREDENTIALS = '/api/2.0/mlflow/traces/*'
const BUCKET = '/bucket/*'
const FAST: QueueOptions = { initialBackoffMs: 10, maxBackoffMs: 200 }
const NO_DROPS = { queue_full: 0, too_large: 0, rejected: 0, retries_exhausted: 0, failed: 0, shutdown: 0, serialization_error: 0 }

interface Workspace {
  server: FakeServer
  env: Record<string, string>
  tokensIssued: () => number
}

/**
 * A fake Databricks workspace: the OAuth token endpoint, the credentials-for-data-upload endpoint
 * (answering with `credentialType`), and a storage bucket on the same port.
 */
async function workspace (t: Test, { credentialType = 'AWS_PRESIGNED_URL', expiresIn = 3600 } = {}): Promise<Workspace> {
  const server = await FakeServer.start()
  t.teardown(async () => await server.close())
  let issued = 0
  server.route('POST', TOKEN, () => ({ body: { access_token: `tok-${++issued}`, token_type: 'Bearer', expires_in: expiresIn, scope: 'all-apis' } }))
  server.route('GET', CREDENTIALS, req => {
    if (!req.path.endsWith('/credentials-for-data-upload')) return { status: 404, body: { error_code: 'ENDPOINT_NOT_FOUND', message: req.path } }
    return {
      body: {
        credential_info: {
          type: credentialType,
          signed_uri: `${server.url}/bucket/traces.json?sig=abc`,
          headers: [{ name: 'x-amz-foo', value: 'bar' }]
        }
      }
    }
  })
  server.route('PUT', BUCKET, () => ({ status: 201, body: '' }))
  server.route('PATCH', BUCKET, () => ({ status: 202, body: '' }))
  const env = {
    MLFLOW_TRACKING_URI: 'databricks',
    DATABRICKS_HOST: server.url,
    MLFLOW_EXPERIMENT_ID: '123',
    DATABRICKS_CLIENT_ID: 'id',
    DATABRICKS_CLIENT_SECRET: 'secret'
  }
  return { server, env, tokensIssued: () => issued }
}

function setup (t: Test, env: Record<string, string>, opts: MlflowTracingOptions = {}): { tracing: MlflowTracing, logger: ReturnType<typeof recordingLogger> } {
  const logger = recordingLogger()
  const tracing = new MlflowTracing({ logger, ...opts, queue: { ...FAST, ...opts.queue } }, env)
  t.teardown(async () => { await tracing.shutdown(100) })
  return { tracing, logger }
}

/** Ends a trace of a root and one child span (with a non-ASCII name); returns the trace id. */
function endTrace (tracing: MlflowTracing): string {
  const root = tracing.tracer.startSpan('root')
  tracing.tracer.startSpan('enfant résumé ✓', {}, trace.setSpan(ROOT_CONTEXT, root)).end()
  root.end()
  return root.trace.id
}

const apiCalls = (server: FakeServer): RecordedRequest[] => server.requests.filter(r => r.path.startsWith('/api/'))

t.test('OAuth M2M', async t => {
  t.test('client credentials, then Bearer on API calls; one token for many concurrent exports', async t => {
    const { server, env, tokensIssued } = await workspace(t)
    const { tracing } = setup(t, env, { queue: { concurrency: 8 } })
    const ids: string[] = []
    for (let i = 0; i < 20; i++) ids.push(endTrace(tracing))
    t.equal(await tracing.flush(5000), true)
    t.equal(tracing.stats().exported, 20)
    t.same(tracing.stats().dropped, NO_DROPS)

    t.equal(tokensIssued(), 1, 'exactly one token request')
    const [tokenReq] = server.received('POST', TOKEN)
    t.equal(tokenReq.headers.authorization, 'Basic ' + Buffer.from('id:secret').toString('base64'))
    t.equal(tokenReq.headers['content-type'], 'application/x-www-form-urlencoded')
    t.same(Object.fromEntries(new URLSearchParams(tokenReq.body)), { grant_type: 'client_credentials', scope: 'all-apis' })
    t.equal(tokenReq.body, 'grant_type=client_credentials&scope=all-apis')

    const calls = apiCalls(server)
    t.equal(server.received('GET', EXPERIMENT).length, 1, 'experiment looked up once')
    t.equal(server.received('GET', EXPERIMENT)[0].query.get('experiment_id'), '123')
    t.equal(server.received('POST', TRACES).length, 20)
    t.equal(server.received('GET', CREDENTIALS).length, 20)
    t.ok(calls.every(r => r.headers.authorization === 'Bearer tok-1'), 'every API call carries the token')
    const posted = server.received('POST', TRACES).map(r => JSON.parse(r.body).trace.trace_info)
    t.same(posted.map(i => i.trace_id).sort(), [...ids].sort())
    t.ok(posted.every(i => i.trace_location.mlflow_experiment.experiment_id === '123'))
    t.same(server.received('GET', CREDENTIALS).map(r => r.path).sort(),
      ids.map(id => `/api/2.0/mlflow/traces/${id}/credentials-for-data-upload`).sort())
    t.equal(server.received('PUT', '/api/2.0/mlflow-artifacts/artifacts/*').length, 0, 'no artifact proxy on Databricks')
    // As MLflow's SDKs do for experiment traces: Databricks' OTLP route writes Unity Catalog tables only.
    t.same(server.requests.filter(r => r.path.endsWith('/v1/traces') || r.path === '/version'), [], 'no OTLP, no version probe')
  })

  t.test('databricksOAuth caches, de-duplicates and refreshes 5 minutes before expiry', async t => {
    const { server, tokensIssued } = await workspace(t)
    let now = 1_000_000
    const auth = databricksOAuth({ host: server.url, clientId: 'id', clientSecret: 'secret', timeoutMs: 5000, now: () => now })
    t.same(await Promise.all(Array.from({ length: 10 }, async () => await auth())), Array(10).fill('Bearer tok-1'))
    t.equal(tokensIssued(), 1, 'ten concurrent callers, one token request')

    now += 3600_000 - 300_000 - 1
    t.equal(await auth(), 'Bearer tok-1', 'still cached just before the refresh margin')
    t.equal(tokensIssued(), 1)

    now += 1
    t.same(await Promise.all(Array.from({ length: 5 }, async () => await auth())), Array(5).fill('Bearer tok-2'))
    t.equal(tokensIssued(), 2, 'refreshed 5 minutes before expiry, once for concurrent callers')
    t.equal(await auth(), 'Bearer tok-2')
    t.equal(tokensIssued(), 2)
  })

  t.test('a failed token request is not cached', async t => {
    const { server, tokensIssued } = await workspace(t)
    server.fail('POST', TOKEN, { status: 503, body: 'unavailable' })
    const auth = databricksOAuth({ host: server.url, clientId: 'id', clientSecret: 'secret', timeoutMs: 5000 })
    await t.rejects(auth(), { name: 'MlflowHttpError', status: 503 })
    t.equal(await auth(), 'Bearer tok-1')
    t.equal(tokensIssued(), 1)
    t.equal(server.received('POST', TOKEN).length, 2)
  })
})

t.test('span upload to the signed URL', async t => {
  t.test('AWS_PRESIGNED_URL: one PUT with the returned headers and no workspace token', async t => {
    const { server, env } = await workspace(t)
    const { tracing } = setup(t, env)
    await tracing.start()
    const id = endTrace(tracing)
    t.equal(await tracing.flush(5000), true)
    t.equal(tracing.stats().exported, 1)

    const puts = server.received('PUT', BUCKET)
    t.equal(puts.length, 1)
    const put = puts[0]
    t.equal(put.url, '/bucket/traces.json?sig=abc')
    t.equal(put.headers['x-amz-foo'], 'bar')
    t.equal(put.headers['content-type'], 'application/json')
    t.notOk('authorization' in put.headers, 'the Databricks token never goes to storage')

    const doc = JSON.parse(put.body) as { spans: Array<{ trace_id: string, span_id: string, parent_span_id: string, name: string, attributes: Record<string, string> }> }
    t.equal(doc.spans.length, 2)
    const hex = id.slice('tr-'.length)
    for (const span of doc.spans) {
      t.equal(Buffer.from(span.trace_id, 'base64').toString('hex'), hex, 'trace_id is the base64 of the 16 id bytes')
      t.equal(Buffer.from(span.span_id, 'base64').length, 8, 'span_id is base64 of 8 bytes')
      t.equal(span.attributes['mlflow.traceRequestId'], JSON.stringify(id), 'every span carries mlflow.traceRequestId')
    }
    const [root, child] = doc.spans
    t.equal(root.name, 'root')
    t.equal(root.parent_span_id, '')
    t.equal(child.name, 'enfant résumé ✓')
    t.equal(child.parent_span_id, root.span_id)
  })

  t.test('AZURE_SAS_URI: one PUT as a block blob', async t => {
    const { server, env } = await workspace(t, { credentialType: 'AZURE_SAS_URI' })
    const { tracing } = setup(t, env)
    endTrace(tracing)
    t.equal(await tracing.flush(5000), true)
    t.equal(tracing.stats().exported, 1)
    const bucket = server.requests.filter(r => r.path.startsWith('/bucket/'))
    t.equal(bucket.length, 1)
    t.equal(bucket[0].method, 'PUT')
    t.equal(bucket[0].url, '/bucket/traces.json?sig=abc')
    t.equal(bucket[0].headers['x-ms-blob-type'], 'BlockBlob')
    t.equal(bucket[0].headers['x-amz-foo'], 'bar', 'returned headers are passed on')
    t.notOk('authorization' in bucket[0].headers)
    t.match(JSON.parse(bucket[0].body), { spans: [{ name: 'root' }, {}] })
  })

  t.test('AZURE_ADLS_GEN2_SAS_URI: create, append, flush', async t => {
    const { server, env } = await workspace(t, { credentialType: 'AZURE_ADLS_GEN2_SAS_URI' })
    const { tracing } = setup(t, env)
    endTrace(tracing)
    t.equal(await tracing.flush(5000), true)
    t.equal(tracing.stats().exported, 1)
    const bucket = server.requests.filter(r => r.path.startsWith('/bucket/'))
    t.same(bucket.map(r => r.method), ['PUT', 'PATCH', 'PATCH'])
    const [create, append, flush] = bucket
    t.equal(create.url, '/bucket/traces.json?sig=abc&resource=file')
    t.equal(create.body, '')
    t.equal(append.url, '/bucket/traces.json?sig=abc&action=append&position=0')
    t.equal(append.headers['content-type'], 'application/octet-stream')
    const length = Buffer.byteLength(append.body)
    t.ok(length > append.body.length, 'the document has multi-byte characters')
    t.equal(flush.url, `/bucket/traces.json?sig=abc&action=flush&position=${length}`, 'flush position is the byte length')
    t.equal(flush.body, '')
    t.match(JSON.parse(append.body), { spans: [{ name: 'root' }, { name: 'enfant résumé ✓' }] })
    for (const r of bucket) {
      t.notOk('authorization' in r.headers)
      t.equal(r.headers['x-amz-foo'], 'bar')
    }
  })
})

t.test('DATABRICKS_TOKEN wins over the service principal', async t => {
  const { server, env, tokensIssued } = await workspace(t)
  const { tracing } = setup(t, { ...env, DATABRICKS_TOKEN: 'dapi-pat' })
  await tracing.start()
  endTrace(tracing)
  t.equal(await tracing.flush(5000), true)
  t.equal(tracing.stats().exported, 1)
  t.equal(tokensIssued(), 0, 'no token endpoint call')
  t.equal(server.received('POST', TOKEN).length, 0)
  const calls = apiCalls(server)
  t.equal(calls.length, 3, 'experiment, StartTraceV3, upload credentials')
  t.ok(calls.every(r => r.headers.authorization === 'Bearer dapi-pat'))
})

t.test('DATABRICKS_HOST without a scheme means https', async t => {
  const pat = resolveDestination({}, { MLFLOW_TRACKING_URI: 'databricks', DATABRICKS_HOST: 'adb-1234.5.azuredatabricks.net', DATABRICKS_TOKEN: 'dapi', MLFLOW_EXPERIMENT_ID: '123' })
  t.match(pat, { kind: 'mlflow', host: 'https://adb-1234.5.azuredatabricks.net', databricks: true, authKind: 'databricks-pat', experimentId: '123' })
  const oauth = resolveDestination({}, { MLFLOW_TRACKING_URI: 'databricks', DATABRICKS_HOST: 'my-ws.cloud.databricks.com/', DATABRICKS_CLIENT_ID: 'id', DATABRICKS_CLIENT_SECRET: 's', MLFLOW_EXPERIMENT_ID: '123' })
  t.match(oauth, { kind: 'mlflow', host: 'https://my-ws.cloud.databricks.com', authKind: 'databricks-oauth' })
})

t.test('a bad OAuth secret fails start() naming the service-principal settings', async t => {
  const { server, env } = await workspace(t)
  server.fail('POST', TOKEN, { status: 401, body: { error: 'invalid_client', error_description: 'Client authentication failed' } })
  const { tracing } = setup(t, { ...env, DATABRICKS_CLIENT_SECRET: 'wrong' })
  const err = await tracing.start().then(() => undefined, (e: unknown) => e) as { code?: string, message?: string }
  t.equal(err?.code, 'FST_MLFLOW_SERVER_REJECTED')
  t.match(err?.message, 'DATABRICKS_CLIENT_ID')
  t.match(err?.message, 'DATABRICKS_CLIENT_SECRET')
  t.match(err?.message, 'Client authentication failed', "the token endpoint's own words")
  t.notMatch(err?.message, 'wrong', 'the secret is not in the message')
  t.equal(server.received('POST', TOKEN)[0].headers.authorization, 'Basic ' + Buffer.from('id:wrong').toString('base64'))
  t.equal(apiCalls(server).length, 0, 'no API call without a token')
})
