// Who is asking (user), which conversation (session), which request (client_request_id), which
// deployment, and the metadata/tags API.
import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { forEachAdapter, type Adapter, type NeutralApp, type NeutralRequest } from './helpers/adapters'
import { buildApp, logCapture, withEnv } from './helpers/plugin-app'
import type { Test } from 'tap'

type WithUser = NeutralRequest & { user?: unknown }

const DEPLOYMENT_ENV = ['APP_ENVIRONMENT', 'AGENT_VERSION', 'DEPLOYMENT_ID', 'DEPLOYMENT_REGION', 'FEATURE_FLAGS', 'MLFLOW_ACTIVE_MODEL_ID',
  'GIT_COMMIT', 'GIT_BRANCH', 'GIT_REPO_URL', 'DATABRICKS_APP_NAME']

/** Clears identity- and deployment-related environment variables for the test. */
function cleanEnv (t: Test, vars: Record<string, string | undefined> = {}): void {
  const all: Record<string, string | undefined> = {}
  for (const key of DEPLOYMENT_ENV) all[key] = undefined
  withEnv(t, { ...all, ...vars })
}

function jwt (claims: object): string {
  const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.sig`
}

/** An app whose `/` route echoes what request.mlflow knows; an auth step sets request.user from x-test-user. */
function identityApp (t: Test, adapter: Adapter, opts: Parameters<Adapter['build']>[1] = {}): NeutralApp {
  const built = adapter.build(t, opts)
  built.auth((request: WithUser) => {
    const raw = request.headers['x-test-user']
    if (typeof raw === 'string') request.user = JSON.parse(raw)
  })
  built.get('/', async req => ({ user: req.mlflow.user ?? null, session: req.mlflow.session ?? null }))
  return built
}

const FORWARDED_CASES: Array<[Record<string, string>, string, string]> = [
  [{ 'x-forwarded-email': 'e@example.com', 'x-forwarded-preferred-username': 'pref', 'x-forwarded-user': 'u-123' }, 'e@example.com', 'x-forwarded-email'],
  [{ 'x-forwarded-preferred-username': 'pref', 'x-forwarded-user': 'u-123' }, 'pref', 'x-forwarded-preferred-username'],
  [{ 'x-forwarded-user': 'u-123' }, 'u-123', 'x-forwarded-user'],
  [{ 'x-forwarded-email': '  ', 'x-forwarded-user': 'u-123' }, 'u-123', 'x-forwarded-user']
]

async function forwarded (t: Test, built: NeutralApp, expectUser: boolean): Promise<void> {
  for (const [headers] of FORWARDED_CASES) t.equal((await built.app.inject({ url: '/', headers })).statusCode, 200)
  const all = await built.traces()
  t.equal(all.length, FORWARDED_CASES.length)
  for (let i = 0; i < all.length; i++) {
    const md = all[i].info.trace_metadata
    if (expectUser) {
      t.equal(md['mlflow.trace.user'], FORWARDED_CASES[i][1])
      t.equal(md.user_source, FORWARDED_CASES[i][2])
      t.equal(all[i].root.attributes['user.id'], FORWARDED_CASES[i][1])
    } else {
      t.notOk('mlflow.trace.user' in md, 'no user from untrusted headers')
      t.notOk('user_source' in md)
      t.equal(all[i].root.attributes['user.id'], undefined)
    }
  }
}

forEachAdapter(t, (t, adapter) => {
  t.test('user: resolveUser wins over every other source', async t => {
    cleanEnv(t)
    const { app, one } = identityApp(t, adapter, { resolveUser: r => r.headers['x-app-user'] as string | undefined, trustForwardedIdentity: true })
    const res = await app.inject({
      url: '/',
      headers: { 'x-app-user': 'resolved@example.com', 'x-test-user': '{"email":"jwt@example.com"}', 'x-forwarded-email': 'fwd@example.com' }
    })
    t.same(res.json(), { user: 'resolved@example.com', session: null }, 'request.mlflow.user in the handler')
    const trace = await one()
    t.equal(trace.info.trace_metadata['mlflow.trace.user'], 'resolved@example.com')
    t.equal(trace.info.trace_metadata.user_source, 'resolver')
  })

  t.test('user: resolveUser returning undefined falls through', async t => {
    cleanEnv(t)
    const { app, one } = identityApp(t, adapter, { resolveUser: () => undefined })
    await app.inject({ url: '/', headers: { 'x-test-user': '{"email":"jwt@example.com","sub":"1"}' } })
    const trace = await one()
    t.equal(trace.info.trace_metadata['mlflow.trace.user'], 'jwt@example.com')
    t.equal(trace.info.trace_metadata.user_source, 'request.user')
  })

  t.test('user: request.user set by an auth step after tracing starts', async t => {
    cleanEnv(t)
    const { app, one } = adapter.build(t)
    app.auth((request: WithUser) => { request.user = { email: 'jwt@example.com', sub: '1' } })
    app.post('/chat', async req => ({ user: req.mlflow.user }))
    const res = await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
    t.same(res.json(), { user: 'jwt@example.com' })
    const trace = await one()
    t.equal(trace.info.trace_metadata['mlflow.trace.user'], 'jwt@example.com')
    t.equal(trace.info.trace_metadata.user_source, 'request.user')
    t.equal(trace.root.attributes['user.id'], 'jwt@example.com')
    t.notOk('mlflow.trace.user' in trace.info.tags, 'the user is metadata, not a tag')
  })

  t.test('user: default request.user fields, in order', async t => {
    cleanEnv(t)
    const { app, traces } = identityApp(t, adapter)
    const cases: Array<[object | string, string | undefined]> = [
      [{ email: 'e@x', preferred_username: 'p', username: 'u', sub: 's', id: 'i' }, 'e@x'],
      [{ preferred_username: 'p', username: 'u', sub: 's' }, 'p'],
      [{ username: 'u', sub: 's' }, 'u'],
      [{ sub: 's', id: 'i' }, 's'],
      [{ id: 7 }, '7'],
      ['plain-string-user', 'plain-string-user'],
      [{ name: 'nobody' }, undefined],
      [{ email: '   ' }, undefined]
    ]
    for (const [user] of cases) await app.inject({ url: '/', headers: { 'x-test-user': JSON.stringify(user) } })
    const all = await traces()
    t.same(all.map(x => x.info.trace_metadata['mlflow.trace.user']), cases.map(c => c[1]))
  })

  t.test('user: custom requestUser and requestUser: false', async t => {
    t.test('custom', async t => {
      cleanEnv(t)
      const { app, one } = identityApp(t, adapter, { requestUser: (u: any) => u.sub })
      await app.inject({ url: '/', headers: { 'x-test-user': '{"email":"jwt@example.com","sub":"1"}' } })
      const trace = await one()
      t.equal(trace.info.trace_metadata['mlflow.trace.user'], '1')
      t.equal(trace.info.trace_metadata.user_source, 'request.user')
    })
    t.test('false ignores request.user', async t => {
      cleanEnv(t)
      const { app, one } = identityApp(t, adapter, { requestUser: false })
      await app.inject({ url: '/', headers: { 'x-test-user': '{"email":"jwt@example.com"}' } })
      const trace = await one()
      t.notOk('mlflow.trace.user' in trace.info.trace_metadata)
      t.notOk('user_source' in trace.info.trace_metadata)
      t.equal(trace.root.attributes['user.id'], undefined)
    })
    t.test('false falls through to trusted forwarded headers', async t => {
      cleanEnv(t)
      const { app, one } = identityApp(t, adapter, { requestUser: false, trustForwardedIdentity: true })
      await app.inject({ url: '/', headers: { 'x-test-user': '{"email":"jwt@example.com"}', 'x-forwarded-email': 'fwd@example.com' } })
      t.equal((await one()).info.trace_metadata['mlflow.trace.user'], 'fwd@example.com')
    })
  })

  t.test('forwarded identity: email > preferred username > user when trusted', async t => {
    t.test('trustForwardedIdentity: true', async t => {
      cleanEnv(t)
      await forwarded(t, identityApp(t, adapter, { trustForwardedIdentity: true }), true)
    })
    t.test('trusted by default on Databricks Apps (DATABRICKS_APP_NAME)', async t => {
      cleanEnv(t, { DATABRICKS_APP_NAME: 'my-agent' })
      await forwarded(t, identityApp(t, adapter), true)
    })
    t.test('request.user beats forwarded headers', async t => {
      cleanEnv(t)
      const { app, one } = identityApp(t, adapter, { trustForwardedIdentity: true })
      await app.inject({ url: '/', headers: { 'x-test-user': '{"email":"jwt@example.com"}', 'x-forwarded-email': 'fwd@example.com' } })
      t.equal((await one()).info.trace_metadata['mlflow.trace.user'], 'jwt@example.com')
    })
  })

  t.test('forwarded identity: never used when untrusted', async t => {
    t.test('default, not on Databricks Apps', async t => {
      cleanEnv(t)
      await forwarded(t, identityApp(t, adapter), false)
    })
    t.test('DATABRICKS_APP_NAME empty is not Databricks Apps', async t => {
      cleanEnv(t, { DATABRICKS_APP_NAME: '' })
      await forwarded(t, identityApp(t, adapter), false)
    })
    t.test('trustForwardedIdentity: false even on Databricks Apps', async t => {
      cleanEnv(t, { DATABRICKS_APP_NAME: 'my-agent' })
      await forwarded(t, identityApp(t, adapter, { trustForwardedIdentity: false }), false)
    })
  })

  t.test('an unverified Bearer JWT is used only with unverifiedJwtClaim', async t => {
    const token = jwt({ email: 'minted@example.com', sub: 'abc' })
    t.test('not by default', async t => {
      cleanEnv(t, { DATABRICKS_APP_NAME: 'my-agent' })
      const { app, one } = identityApp(t, adapter)
      await app.inject({ url: '/', headers: { authorization: `Bearer ${token}` } })
      const trace = await one()
      t.notOk('mlflow.trace.user' in trace.info.trace_metadata)
      t.notOk(JSON.stringify(trace.info).includes('minted'))
      t.notOk(trace.raw.spansJson.includes('minted'))
    })
    t.test('unverifiedJwtClaim: email', async t => {
      cleanEnv(t)
      const { app, traces } = identityApp(t, adapter, { unverifiedJwtClaim: 'email' })
      await app.inject({ url: '/', headers: { authorization: `Bearer ${token}` } })
      await app.inject({ url: '/', headers: { authorization: 'Bearer not-a-jwt' } })
      await app.inject({ url: '/', headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } })
      await app.inject({ url: '/', headers: { authorization: `Bearer ${jwt({ sub: 'x' })}` } })
      const [ok, notJwt, basic, noClaim] = await traces()
      t.equal(ok.info.trace_metadata['mlflow.trace.user'], 'minted@example.com')
      t.equal(ok.info.trace_metadata.user_source, 'unverified-jwt')
      for (const trace of [notJwt, basic, noClaim]) t.notOk('mlflow.trace.user' in trace.info.trace_metadata)
    })
    t.test('trusted forwarded headers beat the JWT', async t => {
      cleanEnv(t)
      const { app, one } = identityApp(t, adapter, { unverifiedJwtClaim: 'email', trustForwardedIdentity: true })
      await app.inject({ url: '/', headers: { authorization: `Bearer ${token}`, 'x-forwarded-email': 'fwd@example.com' } })
      t.equal((await one()).info.trace_metadata['mlflow.trace.user'], 'fwd@example.com')
    })
  })

  t.test('user values are cleaned: control characters removed, at most 250 characters', async t => {
    cleanEnv(t)
    const { app, traces } = identityApp(t, adapter, { trustForwardedIdentity: true })
    // DEL escaped in the JSON text: a raw one is no valid header byte over real HTTP.
    await app.inject({ url: '/', headers: { 'x-test-user': JSON.stringify({ email: 'a\u0000b\u001fc\u007fd@example.com' }).replace('\u007f', '\\u007f') } })
    await app.inject({ url: '/', headers: { 'x-forwarded-email': 'x'.repeat(400) } })
    const [ctl, long] = await traces()
    t.equal(ctl.info.trace_metadata['mlflow.trace.user'], 'abcd@example.com')
    t.equal(long.info.trace_metadata['mlflow.trace.user'].length, 250)
  })

  t.test('session: x-session-id → metadata, root session.id and gen_ai.conversation.id on LLM spans', async t => {
    cleanEnv(t)
    const { app, one } = adapter.build(t)
    app.post('/chat', async req => {
      const answer = await req.mlflow.llm({ provider: 'openai', model: 'gpt-4o' }, async span => {
        span.setLlmResponse({ model: 'gpt-4o-2024', usage: { input_tokens: 3, output_tokens: 4 } })
        return 'hello'
      })
      return { answer, session: req.mlflow.session }
    })
    const res = await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' }, headers: { 'x-session-id': 'conv-42' } })
    t.same(res.json(), { answer: 'hello', session: 'conv-42' })
    const trace = await one()
    t.equal(trace.info.trace_metadata['mlflow.trace.session'], 'conv-42')
    t.notOk('mlflow.trace.session' in trace.info.tags)
    t.equal(trace.root.attributes['session.id'], 'conv-42')
    t.equal(trace.byName('chat gpt-4o').attributes['gen_ai.conversation.id'], 'conv-42')
    for (const key in trace.info.trace_metadata) t.notOk(key.startsWith('gen_ai.'), `${key} is not a gen_ai key`)
  })

  t.test('session: a custom sessionHeader (case-insensitive)', async t => {
    cleanEnv(t)
    const { app, traces } = adapter.build(t, { sessionHeader: 'X-Conversation-Id' })
    app.get('/', async req => req.mlflow.session ?? 'none')
    t.equal((await app.inject({ url: '/', headers: { 'x-conversation-id': 'c-1' } })).body, 'c-1')
    t.equal((await app.inject({ url: '/', headers: { 'x-session-id': 's-1' } })).body, 'none', 'the default header is no longer read')
    const [custom, old] = await traces()
    t.equal(custom.info.trace_metadata['mlflow.trace.session'], 'c-1')
    t.notOk('mlflow.trace.session' in old.info.trace_metadata)
  })

  t.test('session: valid ids use the allowed character set up to 128 characters', async t => {
    cleanEnv(t)
    const { app, traces } = adapter.build(t)
    app.get('/', async () => 'ok')
    const valid = ['a', 'A-z_0.9:@+=/x', 's'.repeat(128), 'user@example.com/conv=1']
    for (const id of valid) await app.inject({ url: '/', headers: { 'x-session-id': id } })
    t.same((await traces()).map(x => x.info.trace_metadata['mlflow.trace.session']), valid)
  })

  t.test('client_request_id: a custom request id header', async t => {
    t.test('custom requestIdHeader', async t => {
      cleanEnv(t)
      const { app, one } = adapter.build(t, { requestIdHeader: 'X-Correlation-Id' })
      app.get('/', async () => 'ok')
      await app.inject({ url: '/', headers: { 'x-correlation-id': 'corr-9', 'x-request-id': 'ignored' } })
      t.equal((await one()).info.client_request_id, 'corr-9')
    })
  })

  t.test('deployment metadata from the environment', async t => {
    t.test('defaults', async t => {
      cleanEnv(t, { GIT_COMMIT: 'c0ffee', GIT_BRANCH: 'main', GIT_REPO_URL: 'https://github.com/o/r.git' })
      const { app, one } = adapter.build(t)
      app.get('/', async () => 'ok')
      await app.inject('/')
      const md = (await one()).info.trace_metadata
      t.equal(md['mlflow.source.type'], 'development')
      t.equal(md['mlflow.trace_schema.version'], '3')
      t.type(md['mlflow.source.name'], 'string')
      for (const key of ['agent_version', 'deployment_id', 'deployment_region', 'feature_flags', 'mlflow.modelId']) t.notOk(key in md, key)
    })
    t.test('every variable', async t => {
      cleanEnv(t, {
        APP_ENVIRONMENT: 'production',
        AGENT_VERSION: '1.4.2',
        DEPLOYMENT_ID: 'dep-7',
        DEPLOYMENT_REGION: 'eu-west-1',
        FEATURE_FLAGS: 'rag=on,tools=off',
        MLFLOW_ACTIVE_MODEL_ID: 'm-abc',
        GIT_COMMIT: 'deadbeef',
        GIT_BRANCH: 'release',
        GIT_REPO_URL: 'https://someone:ghp_SECRETTOKEN@github.com/org/agent.git',
        DATABRICKS_APP_NAME: 'agent-app'
      })
      const { app, one } = adapter.build(t)
      app.get('/', async () => 'ok')
      await app.inject('/')
      const trace = await one()
      t.match(trace.info.trace_metadata, {
        'mlflow.source.type': 'production',
        'mlflow.source.name': 'agent-app',
        agent_version: '1.4.2',
        deployment_id: 'dep-7',
        deployment_region: 'eu-west-1',
        feature_flags: 'rag=on,tools=off',
        'mlflow.modelId': 'm-abc',
        'mlflow.source.git.commit': 'deadbeef',
        'mlflow.source.git.branch': 'release',
        'mlflow.source.git.repoURL': 'https://github.com/org/agent.git'
      })
      t.notOk(JSON.stringify(trace.info).includes('SECRETTOKEN'), 'credentials stripped from the repo URL')
    })
    t.test('blank variables count as unset', async t => {
      cleanEnv(t, { APP_ENVIRONMENT: '  ', AGENT_VERSION: '', GIT_COMMIT: 'x' })
      const { app, one } = adapter.build(t)
      app.get('/', async () => 'ok')
      await app.inject('/')
      const md = (await one()).info.trace_metadata
      t.equal(md['mlflow.source.type'], 'development')
      t.notOk('agent_version' in md)
    })
    t.test('read once, at registration', async t => {
      cleanEnv(t, { AGENT_VERSION: '1', GIT_COMMIT: 'x' })
      const { app, traces } = adapter.build(t)
      app.get('/', async () => 'ok')
      await app.ready()
      process.env.AGENT_VERSION = '2'
      await app.inject('/')
      t.equal((await traces())[0].info.trace_metadata.agent_version, '1')
    })
  })

  t.test('metadata and tags options: static and per request', async t => {
    t.test('static', async t => {
      cleanEnv(t)
      const { app, one } = adapter.build(t, { metadata: { tenant: 'acme' }, tags: { team: 'search' } })
      app.get('/', async () => 'ok')
      await app.inject('/')
      const trace = await one()
      t.equal(trace.info.trace_metadata.tenant, 'acme')
      t.equal(trace.info.tags.team, 'search')
      t.notOk('team' in trace.info.trace_metadata)
      t.notOk('tenant' in trace.info.tags)
    })
    t.test('per request, seeing request.user from an auth hook', async t => {
      cleanEnv(t)
      const seen: unknown[] = []
      const { app, traces } = adapter.build(t, {
        metadata: (r: WithUser) => {
          seen.push(r.user)
          return { tenant: (r.user as { tenant: string }).tenant }
        },
        tags: (r: WithUser & { url: string, user: { plan: string } }) => ({ route: r.url, plan: String(r.user.plan) })
      })
      app.auth((r: WithUser) => { r.user = { email: `${String(r.headers['x-who'])}@example.com`, tenant: `t-${String(r.headers['x-who'])}`, plan: 'pro' } })
      app.post('/chat', async () => 'ok')
      await app.inject({ method: 'POST', url: '/chat', payload: {}, headers: { 'x-who': 'a' } })
      await app.inject({ method: 'POST', url: '/chat', payload: {}, headers: { 'x-who': 'b' } })
      const [a, b] = await traces()
      t.equal(a.info.trace_metadata.tenant, 't-a')
      t.equal(b.info.trace_metadata.tenant, 't-b')
      t.same(a.info.tags, { route: '/chat', plan: 'pro', 'mlflow.traceName': 'POST /chat' })
      t.equal(a.info.trace_metadata['mlflow.trace.user'], 'a@example.com')
      t.equal(seen.length, 2)
      t.ok(seen.every(u => u !== null && u !== undefined), 'request.user was set when the function ran')
    })
  })

  t.test('per-request metadata and tags functions run as the trace ends; route code\'s own values win', async t => {
    cleanEnv(t)
    const { app, one } = adapter.build(t, { metadata: () => ({ tenant: 'from-fn', plan: 'pro' }), tags: () => ({ intent: 'from-fn', lang: 'en' }) })
    app.post('/chat', async req => {
      req.mlflow.setMetadata({ tenant: 'from-route' })
      req.mlflow.setTags({ intent: 'from-route' })
      return 'ok'
    })
    await app.inject({ method: 'POST', url: '/chat', payload: {} })
    const trace = await one()
    t.equal(trace.info.trace_metadata.tenant, 'from-route')
    t.equal(trace.info.trace_metadata.plan, 'pro')
    t.same(trace.info.tags, { intent: 'from-route', lang: 'en', 'mlflow.traceName': 'POST /chat' })
  })

  t.test('request.mlflow.setTags / setMetadata', async t => {
    cleanEnv(t)
    const { app, one } = adapter.build(t)
    app.post('/chat', async req => {
      req.mlflow.setTags({ intent: 'greeting' })
      req.mlflow.setTags({ intent: 'smalltalk', lang: 'en' })
      req.mlflow.setMetadata({ retrieval_index: 'v3' })
      return 'ok'
    })
    await app.inject({ method: 'POST', url: '/chat', payload: {} })
    const trace = await one()
    t.same(trace.info.tags, { intent: 'smalltalk', lang: 'en', 'mlflow.traceName': 'POST /chat' }, 'tags are mutable')
    t.equal(trace.info.trace_metadata.retrieval_index, 'v3')
    t.notOk('intent' in trace.info.trace_metadata)
    t.notOk('retrieval_index' in trace.info.tags)
  })

  t.test('setMetadata / setTags with non-string values throw FST_MLFLOW_INVALID_OPTION', async t => {
    cleanEnv(t)
    const { app, one } = adapter.build(t)
    const errors: string[] = []
    app.get('/', async req => {
      for (const fn of [() => req.mlflow.setMetadata({ n: 1 as unknown as string }), () => req.mlflow.setTags({ b: true as unknown as string })]) {
        try { fn() } catch (err) { errors.push((err as { code: string }).code) }
      }
      return 'ok'
    })
    t.equal((await app.inject('/')).statusCode, 200)
    t.same(errors, ['FST_MLFLOW_INVALID_OPTION', 'FST_MLFLOW_INVALID_OPTION'])
    const trace = await one()
    t.notOk('n' in trace.info.trace_metadata)
    t.notOk('b' in trace.info.tags)
  })

  t.test('gen_ai keys never reach trace metadata', async t => {
    cleanEnv(t, { DATABRICKS_APP_NAME: 'x' })
    const { app, one } = adapter.build(t, { metadata: { team: 'a' } })
    app.post('/chat', async req => {
      await req.mlflow.llm({ provider: 'anthropic', model: 'claude', operation: 'chat' }, async span => {
        span.setLlmResponse({ id: 'resp-1', finishReasons: ['stop'], usage: { input_tokens: 1, output_tokens: 1 } })
      })
      return 'ok'
    })
    await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' }, headers: { 'x-session-id': 's1', 'x-forwarded-email': 'u@x' } })
    const trace = await one()
    t.ok(Object.keys(trace.info.trace_metadata).length > 3)
    t.same(Object.keys(trace.info.trace_metadata).filter(k => k.startsWith('gen_ai')), [])
    t.same(Object.keys(trace.info.tags).filter(k => k.startsWith('gen_ai')), [])
    t.equal(trace.info.trace_metadata['mlflow.trace.user'], 'u@x')
    t.equal(trace.info.trace_metadata['mlflow.trace.session'], 's1')
  })
})

// Fastify's own request id, logger and hooks.

t.test('session: invalid ids are dropped, counted and logged once; the request still succeeds', async t => {
  cleanEnv(t)
  const { stream, lines } = logCapture()
  const { app, traces } = buildApp(t, {}, { logger: { level: 'warn', stream } })
  app.get('/', async req => ({ session: req.mlflow.session ?? null }))
  const invalid: Array<string | string[]> = ['s'.repeat(129), 'has space', 'has"quote', "it's", 'back\\slash', 'ünïcode', ['a', 'b'], '']
  for (const value of invalid) {
    const res = await app.inject({ url: '/', headers: { 'x-session-id': value } })
    t.equal(res.statusCode, 200, JSON.stringify(value))
    t.same(res.json(), { session: null })
  }
  const all = await traces()
  t.equal(all.length, invalid.length, 'every request still traced')
  for (const trace of all) {
    t.notOk('mlflow.trace.session' in trace.info.trace_metadata)
    t.equal(trace.root.attributes['session.id'], undefined)
  }
  t.equal(app.mlflowTracing.stats().invalidSessions, invalid.length)
  const warnings = lines.filter(l => /invalid x-session-id/.test(l.msg))
  t.equal(warnings.length, 1, 'logged at most once')
  t.equal(warnings[0].level, 40)
  t.equal(warnings[0].header, 'x-session-id')
  t.notOk(JSON.stringify(warnings).includes('has space'), 'the bad value itself is not logged')
})

t.test('client_request_id: x-request-id, else Fastify request id; false', async t => {
  t.test('default header, fallback, truncation', async t => {
    cleanEnv(t)
    const { app, traces } = buildApp(t)
    app.get('/', async req => req.id)
    await app.inject({ url: '/', headers: { 'x-request-id': 'proxy-req-1' } })
    const fastifyId = (await app.inject('/')).body
    await app.inject({ url: '/', headers: { 'x-request-id': 'r'.repeat(300) } })
    await app.inject({ url: '/', headers: { 'x-request-id': '' } })
    const [a, b, c, d] = await traces()
    t.equal(a.info.client_request_id, 'proxy-req-1')
    t.equal(b.info.client_request_id, fastifyId)
    t.ok(fastifyId.length > 0)
    t.equal(c.info.client_request_id, 'r'.repeat(250))
    t.not(d.info.client_request_id, '', 'an empty header falls back to Fastify id')
  })
  t.test('requestIdHeader: false always uses Fastify id', async t => {
    cleanEnv(t)
    const { app, one } = buildApp(t, { requestIdHeader: false })
    app.get('/', async req => req.id)
    const res = await app.inject({ url: '/', headers: { 'x-request-id': 'ignored' } })
    t.equal((await one()).info.client_request_id, res.body)
  })
  t.test("Fastify's own genReqId", async t => {
    cleanEnv(t)
    const { app, one } = buildApp(t, {}, { genReqId: () => 'custom-gen-id' })
    app.get('/', async () => 'ok')
    await app.inject('/')
    t.equal((await one()).info.client_request_id, 'custom-gen-id')
  })
})

t.test('setMetadata after the trace ended throws FST_MLFLOW_TRACE_FINALIZED', async t => {
  cleanEnv(t)
  const { app, one } = buildApp(t)
  let kept: FastifyRequest['mlflow'] | undefined
  app.get('/', async req => {
    kept = req.mlflow
    return 'ok'
  })
  // The trace ends when the connection is done with the response: a user onResponse hook still adds to it.
  app.addHook('onResponse', async req => { req.mlflow.setMetadata({ from_on_response: 'yes' }) })
  await app.inject('/')
  const trace = await one()
  t.equal(trace.info.trace_metadata.from_on_response, 'yes')
  t.throws(() => kept!.setMetadata({ late: 'y' }), { code: 'FST_MLFLOW_TRACE_FINALIZED', message: new RegExp(trace.info.trace_id) })
  t.throws(() => kept!.setTags({ late: 'z' }), { code: 'FST_MLFLOW_TRACE_FINALIZED' })
  t.notOk('late' in trace.info.trace_metadata)
})
