// Every option is checked when the plugin registers; a problem at request time never fails the request.
import t from 'tap'
import Fastify from 'fastify'
import fastifyMlflowTracing, { FST_MLFLOW_INVALID_OPTION, MemorySink, MlflowTracing, type FastifyMlflowTracingOptions } from '../plugin/index'
import { buildApp, logCapture, silentLogger, withEnv } from './helpers/plugin-app'

const tracing = (): MlflowTracing => new MlflowTracing({ sink: new MemorySink(), logger: silentLogger })

const INVALID: Array<[string, Record<string, unknown>, RegExp]> = [
  ['sampleRate 2', { sampleRate: 2 }, /sampleRate/],
  ['sampleRate -0.1', { sampleRate: -0.1 }, /sampleRate/],
  ["sampleRate 'x'", { sampleRate: 'x' }, /sampleRate/],
  ['sampleRate NaN', { sampleRate: NaN }, /sampleRate/],
  ["enabled 'yes'", { enabled: 'yes' }, /enabled/],
  ["sessionHeader ''", { sessionHeader: '' }, /sessionHeader/],
  ["logKey ''", { logKey: '' }, /logKey/],
  ['ignore 42', { ignore: 42 }, /ignore/],
  ["ignore ['no-slash']", { ignore: ['no-slash'] }, /ignore/],
  ["ignore 'no-slash'", { ignore: 'health' }, /ignore/],
  ['ignore [1]', { ignore: [1] }, /ignore/],
  ["spanType ''", { spanType: '' }, /spanType/],
  ["spanType '  '", { spanType: '  ' }, /spanType/],
  ['spanType 1', { spanType: 1 }, /spanType/],
  ["resolveUser 'x'", { resolveUser: 'x' }, /resolveUser/],
  ["requestUser 'x'", { requestUser: 'x' }, /requestUser/],
  ['trustForwardedIdentity 1', { trustForwardedIdentity: 1 }, /trustForwardedIdentity/],
  ["activeRootSpan 'yes'", { activeRootSpan: 'yes' }, /activeRootSpan: expected a boolean/],
  ['unverifiedJwtClaim true', { unverifiedJwtClaim: true }, /unverifiedJwtClaim/],
  ['sessionHeader 5', { sessionHeader: 5 }, /sessionHeader/],
  ["requestIdHeader ''", { requestIdHeader: '' }, /requestIdHeader/],
  ['requestIdHeader true', { requestIdHeader: true }, /requestIdHeader/],
  ['traceIdHeader 0', { traceIdHeader: 0 }, /traceIdHeader/],
  ["traceIdHeader ''", { traceIdHeader: '' }, /traceIdHeader/],
  ['logKey 5', { logKey: 5 }, /logKey/],
  ['metadata {a: 1}', { metadata: { a: 1 } }, /metadata/],
  ["metadata 'x'", { metadata: 'x' }, /metadata/],
  ['metadata null', { metadata: null }, /metadata/],
  ['tags []', { tags: [] }, /tags/],
  ['tags {a: null}', { tags: { a: null } }, /tags/],
  ["captureBody 'no'", { captureBody: 'no' }, /captureBody/],
  ['maxBodyChars 0', { maxBodyChars: 0 }, /maxBodyChars/],
  ['maxBodyChars 1.5', { maxBodyChars: 1.5 }, /maxBodyChars/],
  ["redactFields 'password'", { redactFields: 'password' }, /redactFields/],
  ['redactFields [null]', { redactFields: [null] }, /redactFields/],
  ['redactHeaders [1]', { redactHeaders: [1] }, /redactHeaders/],
  ['flushTimeoutMs -1', { flushTimeoutMs: -1 }, /flushTimeoutMs/],
  ["flushTimeoutMs '10'", { flushTimeoutMs: '10' }, /flushTimeoutMs/]
]

t.test('invalid options fail registration with FST_MLFLOW_INVALID_OPTION naming the option', async t => {
  for (const [label, opts, name] of INVALID) {
    t.test(label, async t => {
      const app = Fastify()
      const err = await app.register(fastifyMlflowTracing, { tracing: tracing(), ...opts } as FastifyMlflowTracingOptions).ready()
        .then(() => undefined, (e: unknown) => e)
      t.ok(err !== undefined, 'registration fails')
      t.match(err, { code: 'FST_MLFLOW_INVALID_OPTION', message: name })
      t.type(err, TypeError, 'a TypeError')
      t.type(err, FST_MLFLOW_INVALID_OPTION)
      await app.close().catch(() => {})
    })
  }
})

t.test('the message says what was expected and what was given', async t => {
  await t.rejects(async () => { await Fastify().register(fastifyMlflowTracing, { tracing: tracing(), sampleRate: 2 }).ready() },
    { message: 'Invalid option sampleRate: expected a number from 0 to 1, got 2' })
  await t.rejects(async () => { await Fastify().register(fastifyMlflowTracing, { tracing: tracing(), resolveUser: 'x' as any }).ready() },
    { message: /resolveUser: expected a function, got "x"/ })
})

t.test('an invalid destination fails registration too (owned tracing)', async t => {
  withEnv(t, { MLFLOW_TRACKING_URI: undefined, MLFLOW_EXPERIMENT_ID: undefined, MLFLOW_EXPERIMENT_NAME: undefined })
  const app = Fastify()
  const err = await app.register(fastifyMlflowTracing, { trackingUri: 'ftp://x', experimentId: '1', logger: silentLogger }).ready()
    .then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'FST_MLFLOW_INVALID_OPTION', message: /trackingUri/ })
  t.type(err, TypeError)
  await t.rejects(async () => { await Fastify().register(fastifyMlflowTracing, { trackingUri: 'http://127.0.0.1:1', logger: silentLogger }).ready() },
    { code: 'FST_MLFLOW_INVALID_OPTION', message: /MLFLOW_EXPERIMENT_ID/ }, 'a server without an experiment')
})

t.test('valid edge values register', async t => {
  const valid: FastifyMlflowTracingOptions[] = [
    { sampleRate: 0 }, { sampleRate: 1 }, { sampleRate: 0.5 }, { enabled: false }, { ignore: [] }, { ignore: '/x' }, { ignore: () => false },
    { spanType: 'MY_CUSTOM_TYPE' }, { requestUser: true }, { requestUser: false }, { requestUser: () => undefined },
    { requestIdHeader: false }, { activeRootSpan: true }, { traceIdHeader: false }, { metadata: {} }, { metadata: () => ({}) }, { tags: { a: 'b' } },
    { maxBodyChars: 1 }, { redactFields: [] }, { redactHeaders: ['x-a'] }, { flushTimeoutMs: 1 }, { trustForwardedIdentity: false }
  ]
  for (const opts of valid) {
    const app = Fastify()
    await app.register(fastifyMlflowTracing, { tracing: tracing(), ...opts }).ready()
    t.pass(JSON.stringify(opts) ?? String(opts))
    await app.close()
  }
})

t.test('request-time problems never fail the request', async t => {
  t.test('a metadata function that throws', async t => {
    const { stream, lines } = logCapture()
    const { app, one } = buildApp(t, {
      trustForwardedIdentity: true,
      metadata: () => { throw new Error('metadata lookup failed') },
      tags: { static: 'yes' }
    }, { logger: { level: 'warn', stream } })
    app.post('/chat', async () => ({ answer: 'ok' }))
    const res = await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' }, headers: { 'x-forwarded-email': 'u@example.com' } })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { answer: 'ok' })
    const trace = await one()
    t.equal(trace.info.state, 'OK', 'the trace is still exported')
    t.equal(trace.info.tags.static, 'yes')
    t.equal(trace.info.trace_metadata['mlflow.trace.user'], 'u@example.com', 'data from before the failure is kept')
    t.same(trace.root.attributes['mlflow.spanOutputs'], { answer: 'ok' })
    t.same(trace.root.attributes['mlflow.spanInputs'], { message: 'hi' }, 'data unrelated to the failure is kept')
    t.equal(trace.info.request_preview, 'hi', 'and the request preview')
    t.equal(app.mlflowTracing.stats().hookErrors, 1)
    const warning = lines.find(l => /hook failed/.test(l.msg))
    t.equal(warning?.err, 'metadata lookup failed', 'the problem is logged')
  })

  t.test('a resolveUser that throws', async t => {
    const { app, one } = buildApp(t, { resolveUser: () => { throw new Error('directory down') }, metadata: () => ({ tenant: 'acme' }) })
    app.post('/', async req => ({ user: req.mlflow.user ?? null }))
    const res = await app.inject({ method: 'POST', url: '/', payload: { message: 'hi' } })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { user: null })
    const trace = await one()
    t.notOk('mlflow.trace.user' in trace.info.trace_metadata, 'without the user')
    t.equal(trace.info.trace_metadata.tenant, 'acme', 'per-request metadata still computed')
    t.same(trace.root.attributes['mlflow.spanInputs'], { message: 'hi' }, 'the request body still recorded')
    t.equal(app.mlflowTracing.stats().hookErrors, 1)
  })

  t.test('a requestUser and a tags function that throw', async t => {
    const { app, traces } = buildApp(t, {
      requestUser: () => { throw new Error('bad user shape') },
      tags: () => { throw new Error('bad tags') }
    })
    app.decorateRequest('user', null)
    app.addHook('onRequest', async req => { (req as { user?: unknown }).user = { email: 'x@y' } })
    app.get('/', async () => 'ok')
    for (let i = 0; i < 3; i++) t.equal((await app.inject('/')).statusCode, 200)
    t.equal((await traces()).length, 3)
    t.ok(app.mlflowTracing.stats().hookErrors >= 3, 'every failure counted (one or two per request)')
  })

  t.test('the same failure on a 404 (enriched when the request ends)', async t => {
    const { app, one } = buildApp(t, { metadata: () => { throw new Error('boom') } })
    t.equal((await app.inject('/missing')).statusCode, 404)
    const trace = await one()
    t.equal(trace.root.name, 'GET (no route)')
    t.equal(app.mlflowTracing.stats().hookErrors, 1)
  })

  t.test('a failure in a hook is logged at most once a minute', async t => {
    const { stream, lines } = logCapture()
    const { app, traces } = buildApp(t, { metadata: () => { throw new Error('again') } }, { logger: { level: 'warn', stream } })
    app.get('/', async () => 'ok')
    for (let i = 0; i < 5; i++) await app.inject('/')
    t.equal((await traces()).length, 5)
    t.equal(app.mlflowTracing.stats().hookErrors, 5)
    t.equal(lines.filter(l => /hook failed/.test(l.msg)).length, 1)
  })

  t.test('an ignore predicate that throws', async t => {
    const { app, traces } = buildApp(t, { ignore: () => { throw new Error('bad predicate') } })
    app.get('/', async req => {
      // route code needs no checks: the handle is the no-op one
      const value = req.mlflow.span('work', {}, () => 'done')
      return { traced: req.mlflow.traced, value }
    })
    const res = await app.inject('/')
    t.equal(res.statusCode, 200, 'the request still succeeds')
    t.same(res.json(), { traced: false, value: 'done' }, 'left untraced')
    t.equal((await traces()).length, 0)
    t.equal(app.mlflowTracing.stats().hookErrors, 1, 'counted')
  })

  t.test('request.mlflow misuse in route code surfaces to that route only', async t => {
    const { app, traces } = buildApp(t)
    app.get('/', async req => {
      try {
        req.mlflow.setMetadata({ n: 1 as unknown as string })
      } catch (err) {
        return { code: (err as { code: string }).code }
      }
      return {}
    })
    t.same((await app.inject('/')).json(), { code: 'FST_MLFLOW_INVALID_OPTION' })
    t.equal((await traces()).length, 1)
  })
})
