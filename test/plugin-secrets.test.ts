// No credential a request or response carries may reach an exported byte: not in trace info,
// not in spans, not in the local JSON Lines file.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { RequestTracingOptions } from '../plugin/index'
import { forEachAdapter, type NeutralApp } from './helpers/adapters'
import { silentLogger, withEnv } from './helpers/plugin-app'
import type { Test } from 'tap'

const SECRETS = {
  auth: 'SECRET-AUTH-a1b2c3',
  cookie: 'SECRET-COOKIE-d4e5f6',
  obo: 'SECRET-OBO-g7h8i9',
  internal: 'SECRET-INTERNAL-j0k1l2',
  setCookie: 'SECRET-SETCOOKIE-m3n4o5',
  password: 'SECRET-PW-p6q7r8',
  ssn: 'SECRET-SSN-s9t0u1',
  nestedToken: 'SECRET-NESTED-v2w3x4',
  query: 'SECRET-QUERY-y5z6a7',
  responseToken: 'SECRET-RESPTOKEN-b8c9d0',
  apiKey: 'SECRET-APIKEY-e1f2g3'
}
const ALL = Object.values(SECRETS)
const OPTIONS: RequestTracingOptions = { redactHeaders: ['x-internal-key'], redactFields: ['ssn'] }

function secretHeaders (n: number): Record<string, string> {
  return {
    authorization: `Bearer ${SECRETS.auth}`,
    cookie: `sid=${SECRETS.cookie}; theme=dark`,
    'x-forwarded-access-token': SECRETS.obo,
    'x-internal-key': SECRETS.internal,
    'x-api-key': SECRETS.apiKey,
    'proxy-authorization': `Basic ${SECRETS.auth}`,
    'x-forwarded-email': `user-${n}@example.com`,
    'x-session-id': `session-${n}`,
    'x-request-id': `req-${n}`
  }
}

function secretBody (): object {
  return {
    message: 'please help',
    password: SECRETS.password,
    ssn: SECRETS.ssn,
    profile: { token: SECRETS.nestedToken, items: [{ api_key: SECRETS.apiKey }] }
  }
}

function addRoutes (app: NeutralApp): void {
  app.post('/chat', async (req, reply) => {
    reply.header('set-cookie', `session=${SECRETS.setCookie}; HttpOnly`)
    await req.mlflow.llm({ provider: 'openai', model: 'gpt-4o', inputs: { message: 'please help' } }, async span => {
      span.setLlmResponse({ usage: { input_tokens: 1, output_tokens: 1 } })
    })
    return { answer: 'done', token: SECRETS.responseToken, nested: { password: SECRETS.password } }
  })
  app.post('/fail', async () => { throw new Error('upstream model failed') })
  app.post('/bad-request', async (_req, reply) => {
    reply.code(400)
    return { error: 'bad', access_token: SECRETS.responseToken }
  })
  app.get('/users/:id', async (_req, reply) => {
    reply.header('set-cookie', SECRETS.setCookie)
    return { ok: true }
  })
}

async function sendAll (app: NeutralApp): Promise<number> {
  let n = 0
  const send = async (method: 'GET' | 'POST', url: string, withBody: boolean): Promise<void> => {
    const res = await app.inject({ method, url, headers: secretHeaders(n), ...(withBody ? { payload: secretBody() } : {}) })
    n++
    if (res.statusCode === 0) throw new Error('no response')
  }
  await send('POST', `/chat?api_key=${SECRETS.query}`, true)
  await send('POST', '/fail', true)
  await send('POST', '/bad-request', true)
  await send('GET', `/users/42?token=${SECRETS.query}`, false)
  await send('GET', `/nowhere?password=${SECRETS.query}`, false)
  return n
}

function leaks (text: string): string[] {
  return ALL.filter(secret => text.includes(secret))
}

forEachAdapter(t, (t, adapter) => {
  for (const trusted of [true, false]) {
    t.test(`no secret in any exported byte (MemorySink, ${trusted ? 'trusted' : 'untrusted'} identity)`, async t => {
      withEnv(t, { DATABRICKS_APP_NAME: undefined })
      const app = adapter.build(t, { ...OPTIONS, trustForwardedIdentity: trusted })
      const { traces } = app
      addRoutes(app)
      const sent = await sendAll(app)
      const all = await traces()
      t.equal(all.length, sent, 'every request traced')
      for (const trace of all) {
        const text = JSON.stringify(trace.info) + trace.raw.spansJson
        if (trace.root.name.endsWith('(no route)')) {
          // The frameworks' default 404 bodies echo the URL, query string included: never captured as outputs.
          t.same(leaks(text).filter(s => s !== SECRETS.query), [], `${trace.root.name}: no secret but the query string`)
          t.same(leaks(text), [], `${trace.root.name}: no query-string secret`)
        } else {
          t.same(leaks(text), [], `${trace.root.name}: no secret`)
        }
      }
      // The redaction left the rest intact, so the test would see the secrets if they were there.
      const chat = all[0]
      t.equal(chat.root.attributes['mlflow.spanInputs'].password, '[REDACTED]')
      t.equal(chat.root.attributes['mlflow.spanInputs'].ssn, '[REDACTED]')
      t.equal(chat.root.attributes['mlflow.spanInputs'].profile.token, '[REDACTED]')
      t.equal(chat.root.attributes['mlflow.spanOutputs'].token, '[REDACTED]')
      t.equal(chat.root.attributes['mlflow.spanOutputs'].answer, 'done')
      t.equal(chat.info.trace_metadata['mlflow.trace.user'], trusted ? 'user-0@example.com' : undefined)
      t.equal(chat.info.trace_metadata['mlflow.trace.session'], 'session-0')
      t.equal(all[1].info.state, 'ERROR')
      t.match(all[1].root.events[0].attributes['exception.message'], 'upstream model failed')
    })

    t.test(`no secret in the JSON Lines file of the embedded default (${trusted ? 'trusted' : 'untrusted'})`, async t => {
      withEnv(t, { MLFLOW_TRACKING_URI: undefined, MLFLOW_TRACES_FILE: undefined, DATABRICKS_APP_NAME: undefined })
      const file = join(t.testdir(), 'traces.jsonl')
      const app = adapter.build(t, { ...OPTIONS, trustForwardedIdentity: trusted, tracesFile: file, logger: silentLogger })
      addRoutes(app)
      const sent = await sendAll(app)
      await app.close()
      const text = readFileSync(file, 'utf8')
      const lines = text.trimEnd().split('\n')
      t.equal(lines.length, sent, 'every request written')
      t.same(leaks(text).filter(s => s !== SECRETS.query), [], 'no secret anywhere in the file (but the 404 query string)')
      t.same(leaks(text), [], 'no query-string secret anywhere in the file')
      t.match(text, '[REDACTED]')
      t.match(text, 'upstream model failed')
    })
  }

  t.test('a JSON response longer than maxBodyChars is still redacted', async t => {
    const app = adapter.build(t, { maxBodyChars: 200 })
    const { one } = app
    app.get('/big', async () => ({ token: SECRETS.responseToken, filler: 'x'.repeat(1000) }))
    await app.inject('/big')
    const trace = await one()
    t.same(leaks(JSON.stringify(trace.info) + trace.raw.spansJson), [], 'the secret field is not exported in the truncated text')
  })

  t.test('a JSON request longer than maxBodyChars is redacted before truncation', async t => {
    const app = adapter.build(t, { maxBodyChars: 200 })
    const { one } = app
    app.post('/big', async () => 'ok')
    await app.inject({ method: 'POST', url: '/big', payload: { password: SECRETS.password, filler: 'x'.repeat(1000) } })
    const trace = await one()
    t.same(leaks(JSON.stringify(trace.info) + trace.raw.spansJson), [])
    t.match(trace.root.attributes['mlflow.spanInputs'], /^\{"password":"\[REDACTED\]"/)
  })

  t.test('headers that carry secrets cannot become the session or request id header', async t => {
    const invalid = async (t: Test, opts: RequestTracingOptions, name: RegExp): Promise<void> => {
      await t.rejects(adapter.validate(opts), { code: 'FST_MLFLOW_INVALID_OPTION', message: name })
    }
    await invalid(t, { sessionHeader: 'authorization' }, /sessionHeader.*authorization/)
    await invalid(t, { sessionHeader: 'Authorization' }, /sessionHeader/)
    await invalid(t, { requestIdHeader: 'cookie' }, /requestIdHeader.*cookie/)
    await invalid(t, { requestIdHeader: 'Set-Cookie' }, /requestIdHeader/)
    await invalid(t, { sessionHeader: 'x-forwarded-access-token' }, /sessionHeader/)
    await invalid(t, { sessionHeader: 'proxy-authorization' }, /sessionHeader/)
    await invalid(t, { requestIdHeader: 'x-api-key' }, /requestIdHeader/)
    await invalid(t, { redactHeaders: ['X-Internal-Key'], sessionHeader: 'x-internal-key' }, /sessionHeader/)
    await invalid(t, { redactHeaders: ['x-internal-key'], requestIdHeader: 'X-Internal-Key' }, /requestIdHeader/)
  })
})
