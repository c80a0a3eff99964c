// The per-request lifecycle: one root span per request, its name, type, status, bodies and end,
// and what is not traced at all.
import t, { type Test } from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { connect as http2Connect } from 'node:http2'
import { connect } from 'node:net'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { trace as otelTrace } from '@opentelemetry/api'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import fastifyMlflowTracing from '../plugin/index'
import { nowNs } from '../plugin/trace/time'
import { forEachAdapter, type Adapter, type NeutralApp, type NeutralRequest, type StreamOut } from './helpers/adapters'
import { buildApp, exceptionMessages, logCapture, parseSpans, silentLogger, until, withEnv } from './helpers/plugin-app'

const b64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64')

/** Lets a handler that outlived its client run to its end, with whatever it might still trace. */
async function lateWorkSettled (): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise(resolve => setImmediate(resolve))
}

async function listen (app: FastifyInstance): Promise<string> {
  return await app.listen({ port: 0, host: '127.0.0.1' })
}

forEachAdapter(t, (t, adapter) => {
  t.test('root span: named after the route pattern, CHAIN by default', async t => {
    const { app, traces } = adapter.build(t)
    app.post('/chat', async () => ({ answer: 'hello' }))
    app.get('/users/:id', async () => ({ ok: true }))

    t.equal((await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })).statusCode, 200)
    t.equal((await app.inject({ method: 'GET', url: '/users/42' })).statusCode, 200)

    const [chat, user] = await traces()
    t.equal(chat.root.name, 'POST /chat')
    t.equal(chat.root.rawAttributes['mlflow.spanType'], '"CHAIN"', 'attribute values are JSON text')
    t.equal(chat.root.attributes['http.request.method'], 'POST')
    t.equal(chat.root.attributes['http.route'], '/chat')
    t.equal(chat.root.attributes['http.response.status_code'], 200)
    t.equal(chat.root.parent_span_id, '', 'a root without a remote parent has no parent')
    t.equal(chat.info.state, 'OK')
    t.equal(chat.root.status.code, 'STATUS_CODE_OK')
    t.equal(chat.spans.length, 1)
    t.equal(user.root.name, 'GET /users/:id', 'the pattern, not the path')
    t.equal(user.root.attributes['http.route'], '/users/:id')
  })

  t.test('the plugin-wide spanType option sets the default root type', async t => {
    const { app, one } = adapter.build(t, { spanType: 'AGENT' })
    app.get('/', async () => 'ok')
    await app.inject('/')
    t.equal((await one()).root.attributes['mlflow.spanType'], 'AGENT')
  })

  t.test('sampleRate: a request is traced when Math.random() falls under the rate', async t => {
    const { app, traces } = adapter.build(t, { sampleRate: 0.5 })
    const original = Math.random
    t.teardown(() => { Math.random = original })
    app.get('/', async req => ({ traced: req.mlflow.traced }))
    await app.ready()
    const draws = [0.1, 0.49, 0.5, 0.9]
    const results: boolean[] = []
    for (const draw of draws) {
      Math.random = () => draw
      const res = await app.inject('/')
      Math.random = original
      results.push(res.json().traced)
      t.equal('x-mlflow-trace-id' in res.headers, res.json().traced, 'the trace id header only on traced requests')
    }
    t.same(results, [true, true, false, false])
    t.equal((await traces()).length, 2)
  })

  t.test('an unknown route is traced as METHOD (no route)', async t => {
    const { app, one } = adapter.build(t)
    app.get('/known', async () => 'ok')
    const res = await app.inject({ method: 'GET', url: '/nowhere/42' })
    t.equal(res.statusCode, 404)
    const trace = await one()
    t.equal(trace.root.name, 'GET (no route)')
    t.equal(trace.root.attributes['http.route'], undefined, 'no route attribute without a route')
    t.equal(trace.root.attributes['http.response.status_code'], 404)
    t.equal(trace.info.state, 'OK', 'a 404 is not a server error')
  })

  t.test('traceparent: the caller\'s W3C trace is continued towards OTel and recorded as metadata', async t => {
    // Since 3f1f82b the MLflow trace has an id of its own and a parentless root (MLflow needs both);
    // the caller's ids are metadata, and spans report the caller's trace id to OTel.
    const { app, traces } = adapter.build(t, { activeRootSpan: true })
    const traceId = '0af7651916cd43dd8448eb211c80319c'
    const spanId = 'b7ad6b7169203331'
    const seen: Array<string | undefined> = []
    app.get('/', async req => {
      seen.push(otelTrace.getActiveSpan()?.spanContext().traceId)
      await req.mlflow.span('child', {}, async () => { seen.push(otelTrace.getActiveSpan()?.spanContext().traceId) })
      return 'ok'
    })
    const headers = { traceparent: `00-${traceId}-${spanId}-01` }
    const [first, second] = [await app.inject({ url: '/', headers }), await app.inject({ url: '/', headers })]
    const [a, b] = await traces()
    t.match(a.info.trace_id, /^tr-[0-9a-f]{32}$/)
    t.not(a.info.trace_id, `tr-${traceId}`, 'not the caller\'s id: MLflow would overwrite the caller\'s trace')
    t.not(a.info.trace_id, b.info.trace_id, 'two requests under one upstream trace are two MLflow traces')
    t.equal(first.headers['x-mlflow-trace-id'], a.info.trace_id)
    t.equal(second.headers['x-mlflow-trace-id'], b.info.trace_id)
    t.equal(a.root.parent_span_id, '', 'the exported root has no parent, so MLflow finds it')
    t.equal(a.root.trace_id, b64(a.info.trace_id.slice(3)))
    t.equal(a.byName('child').parent_span_id, a.root.span_id)
    t.equal(a.info.trace_metadata['w3c.parent_trace_id'], traceId)
    t.equal(a.info.trace_metadata['w3c.parent_span_id'], spanId)
    t.equal(b.info.trace_metadata['w3c.parent_trace_id'], traceId)
    t.same(seen, [traceId, traceId, traceId, traceId], 'OTel sees the caller\'s trace id, in the handler and in child spans')
  })

  t.test('traceparent: malformed or all-zero values are ignored', async t => {
    const bad = [
      'garbage',
      '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331', // no flags
      '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01', // upper case
      '01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', // unknown version
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
      '00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01' // short span id
    ]
    const { app, traces } = adapter.build(t)
    app.get('/', async () => 'ok')
    for (const traceparent of bad) t.equal((await app.inject({ url: '/', headers: { traceparent } })).statusCode, 200, traceparent)
    const all = await traces()
    t.equal(all.length, bad.length)
    for (const trace of all) {
      t.notOk('w3c.parent_trace_id' in trace.info.trace_metadata, 'no parent recorded')
      t.notOk('w3c.parent_span_id' in trace.info.trace_metadata)
      t.not(trace.info.trace_id, 'tr-0af7651916cd43dd8448eb211c80319c', 'a fresh trace id')
      t.not(trace.info.trace_id, 'tr-00000000000000000000000000000000')
      t.match(trace.info.trace_id, /^tr-[0-9a-f]{32}$/)
      t.equal(trace.root.parent_span_id, '')
    }
    t.equal(new Set(all.map(x => x.info.trace_id)).size, bad.length, 'every request its own trace')
  })

  t.test('x-mlflow-trace-id response header: the exported trace id; renamed or turned off', async t => {
    t.test('default', async t => {
      const { app, one } = adapter.build(t)
      app.get('/', async () => 'ok')
      const res = await app.inject('/')
      t.equal(res.headers['x-mlflow-trace-id'], (await one()).info.trace_id)
    })
    t.test('renamed', async t => {
      const { app, one } = adapter.build(t, { traceIdHeader: 'x-trace' })
      app.get('/', async () => 'ok')
      const res = await app.inject('/')
      t.equal(res.headers['x-trace'], (await one()).info.trace_id)
      t.notOk('x-mlflow-trace-id' in res.headers)
    })
    t.test('traceIdHeader: false', async t => {
      const { app, one } = adapter.build(t, { traceIdHeader: false })
      app.get('/', async () => 'ok')
      const res = await app.inject('/')
      t.notOk('x-mlflow-trace-id' in res.headers)
      await one()
    })
    t.test('also on errors and 404s', async t => {
      const { app, traces } = adapter.build(t)
      app.get('/boom', async () => { throw new Error('boom') })
      const boom = await app.inject('/boom')
      const missing = await app.inject('/missing')
      const [a, b] = await traces()
      t.equal(boom.headers['x-mlflow-trace-id'], a.info.trace_id)
      t.equal(missing.headers['x-mlflow-trace-id'], b.info.trace_id)
    })
  })

  t.test('a handler that throws: 500, trace ERROR, root ERROR with the exception', async t => {
    const { app, one } = adapter.build(t)
    app.post('/chat', async () => { throw new Error('model exploded') })
    const res = await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
    t.equal(res.statusCode, 500)
    const trace = await one()
    t.equal(trace.info.state, 'ERROR')
    t.equal(trace.root.status.code, 'STATUS_CODE_ERROR')
    t.equal(trace.root.status.message, 'model exploded')
    t.same(exceptionMessages(trace.root), ['model exploded'])
    const event = trace.root.events[0]
    t.equal(event.attributes['exception.type'], 'Error')
    t.match(event.attributes['exception.stacktrace'], /model exploded/)
    t.equal(trace.root.attributes['http.response.status_code'], 500)
    t.same(trace.root.attributes['mlflow.spanInputs'], { message: 'hi' }, 'the request body is still recorded')
  })

  t.test('a synchronous throw and a 5xx without an error object', async t => {
    const { app, traces } = adapter.build(t)
    app.get('/sync', () => { throw new Error('sync failure') })
    app.get('/503', async (_req, reply) => {
      reply.code(503)
      return { busy: true }
    })
    t.equal((await app.inject('/sync')).statusCode, 500)
    t.equal((await app.inject('/503')).statusCode, 503)
    const [sync, busy] = await traces()
    t.equal(sync.info.state, 'ERROR')
    t.same(exceptionMessages(sync.root), ['sync failure'])
    t.equal(busy.info.state, 'ERROR')
    t.equal(busy.root.status.message, 'HTTP 503')
    t.same(exceptionMessages(busy.root), [], 'no error, no exception event')
  })

  t.test('4xx answers are not errors of the service', async t => {
    const { app, traces } = adapter.build(t)
    app.get('/sent', async (_req, reply) => {
      reply.code(404)
      return { error: 'no such thing' }
    })
    app.get('/thrown', async () => {
      const e = new Error('nope');
      (e as any).statusCode = 400
      throw e
    })
    t.equal((await app.inject('/sent')).statusCode, 404)
    t.equal((await app.inject('/thrown')).statusCode, 400)
    const all = await traces()
    t.equal(all.length, 2)
    for (const trace of all) {
      t.equal(trace.info.state, 'OK', trace.root.name)
      t.equal(trace.root.status.code, 'STATUS_CODE_OK')
      t.same(exceptionMessages(trace.root), [], 'no exception event')
    }
    t.same(all[1].root.attributes['http.response.status_code'], 400)
  })

  t.test('a streamed response: the trace ends when the stream ends, not when headers are sent', async t => {
    const { app, sink, traces } = adapter.build(t)
    let out: StreamOut | undefined
    let request: NeutralRequest | undefined
    app.stream('GET', '/stream', (req, o) => {
      request = req
      out = o
      o.write('data: first\n\n')
    })
    const base = await app.listen()
    const res = await fetch(`${base}/stream`)
    t.equal(res.status, 200, 'headers arrived')
    const traceId = res.headers.get('x-mlflow-trace-id')
    const reader = res.body!.getReader()
    t.match(new TextDecoder().decode((await reader.read()).value), 'data: first')

    await app.tracing().flush(2000)
    t.equal(sink.traces.length, 0, 'no trace while the stream is open')

    // Work done after the headers went out, while the body is still streaming.
    const late = request!.mlflow.span('after headers', {}, () => 'late work')
    t.equal(late, 'late work')
    out!.write('data: second\n\n')
    const lastChunkNs = nowNs()
    out!.write('data: last\n\n')
    out!.end()
    let body = ''
    for (let r = await reader.read(); r.done !== true; r = await reader.read()) body += new TextDecoder().decode(r.value)
    t.match(body, 'data: last')

    await until(() => sink.traces.length === 1, 'the trace of the stream')
    const [trace] = await traces()
    t.equal(trace.info.trace_id, traceId)
    const child = trace.byName('after headers')
    t.equal(child.parent_span_id, trace.root.span_id, 'work after the headers is part of the trace')
    t.equal(child.attributes['mlflow.spanOutputs'], 'late work')
    t.ok(trace.root.end >= lastChunkNs, 'the root ends after the last chunk was written')
    t.ok(trace.root.end >= child.end)
    t.equal(trace.info.state, 'OK')
    t.same(trace.root.attributes['mlflow.spanOutputs'], {
      object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'first\nsecond\nlast' }, finish_reason: null }]
    }, 'the events sent, before and after the headers, are the root outputs')
    t.equal(trace.info.response_preview, 'first\nsecond\nlast')
    t.equal(app.stats().lateSpans, 0)
  })

  async function sseApp (t: Test, adapter: Adapter): Promise<NeutralApp & { base: string, stream: () => StreamOut }> {
    const built = adapter.build(t)
    let out: StreamOut | undefined
    built.stream('POST', '/stream', (_req, o) => {
      out = o
      o.write('data: first\n\n')
    })
    return { ...built, base: await built.listen(), stream: () => out as StreamOut }
  }

  t.test('a stream that fails after the headers went out: one ERROR trace', async t => {
    const { sink, traces, base, stream } = await sseApp(t, adapter)
    const res = await fetch(`${base}/stream`, { method: 'POST' })
    const reader = res.body!.getReader()
    await reader.read()
    stream().fail(new Error('provider failed mid-stream'))
    await t.rejects(async () => { while ((await reader.read()).done !== true); }, 'the client sees the stream cut')
    await until(() => sink.traces.length >= 1, 'the trace of the failed stream')
    const all = await traces()
    t.equal(all.length, 1)
    t.equal(all[0].info.state, 'ERROR')
    t.equal(all[0].root.status.code, 'STATUS_CODE_ERROR')
    t.equal(all[0].root.status.message, 'provider failed mid-stream', 'the status names the stream error')
    t.same(exceptionMessages(all[0].root), ['provider failed mid-stream'], 'with an exception event')
  })

  t.test('a client that leaves in the middle of a stream: one ERROR trace, not a lost one', async t => {
    const { sink, traces, base, stream } = await sseApp(t, adapter)
    const ac = new AbortController()
    const res = await fetch(`${base}/stream`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' }, signal: ac.signal })
    await res.body!.getReader().read()
    // The request was read in full, so Fastify runs neither onRequestAbort nor onResponse here.
    ac.abort()
    await until(() => sink.traces.length >= 1, 'the trace of the abandoned stream')
    stream().end()
    const all = await traces()
    t.equal(all.length, 1)
    t.equal(all[0].info.state, 'ERROR')
    t.equal(all[0].root.status.message, 'client aborted the request')
  })

  t.test('client abort: one ERROR trace, "client aborted the request"', async t => {
    const { app, sink, traces } = adapter.build(t)
    let entered: () => void = () => {}
    const inHandler = new Promise<void>(resolve => { entered = resolve })
    let release: () => void = () => {}
    const hang = new Promise<void>(resolve => { release = resolve })
    let handlerDone: () => void = () => {}
    const finished = new Promise<void>(resolve => { handlerDone = resolve })
    t.teardown(() => release())
    app.get('/slow', async req => {
      entered()
      try {
        await hang
        // The client is gone: work after that still lands in (or is counted against) the one trace.
        req.mlflow.span('after abort', {}, () => undefined)
        return { late: true }
      } finally {
        handlerDone()
      }
    })
    const base = await app.listen()
    const ac = new AbortController()
    const pending = fetch(`${base}/slow`, { signal: ac.signal })
    await inHandler
    ac.abort()
    await t.rejects(pending)
    await until(() => sink.traces.length >= 1, 'the aborted trace')
    // Let the handler finish after the client left: it must not add a second trace.
    release()
    await finished
    await lateWorkSettled()
    const all = await traces()
    t.equal(all.length, 1, 'exactly one trace')
    t.equal(all[0].info.state, 'ERROR')
    t.equal(all[0].root.status.code, 'STATUS_CODE_ERROR')
    t.equal(all[0].root.status.message, 'client aborted the request')
    t.equal(all[0].root.attributes['http.response.status_code'], undefined, 'no status was sent')
    t.same(all[0].spans.map(s => s.name), ['GET /slow'], 'a span started after the trace ended is not exported')
    t.equal(app.stats().lateSpans, 1, '... but counted')
  })

  t.test('bodies: redacted request body as inputs, JSON response as outputs, chat previews', async t => {
    const { app, one } = adapter.build(t, { redactFields: ['ssn', 'Card_Number'] })
    app.post('/chat', async () => ({ answer: 'hello', token: 'response-token' }))
    await app.inject({
      method: 'POST',
      url: '/chat',
      payload: {
        message: 'hi',
        password: 'pw',
        Token: 'tk',
        nested: { api_key: 'k', list: [{ ssn: '123' }, { card_number: '4111' }], keep: 'visible' }
      }
    })
    const trace = await one()
    t.same(trace.root.attributes['mlflow.spanInputs'], {
      message: 'hi',
      password: '[REDACTED]',
      Token: '[REDACTED]',
      nested: { api_key: '[REDACTED]', list: [{ ssn: '[REDACTED]' }, { card_number: '[REDACTED]' }], keep: 'visible' }
    })
    t.same(trace.root.attributes['mlflow.spanOutputs'], { answer: 'hello', token: '[REDACTED]' })
    t.equal(trace.info.request_preview, 'hi', 'the message text, not the JSON around it')
    t.equal(trace.info.response_preview, 'hello')
  })

  t.test('previews: a chat messages array and a body without a message field', async t => {
    const { app, traces } = adapter.build(t)
    app.post('/chat', async () => ({ result: 42 }))
    await app.inject({ method: 'POST', url: '/chat', payload: { messages: [{ role: 'user', content: 'first' }, { role: 'user', content: 'last' }] } })
    await app.inject({ method: 'POST', url: '/chat', payload: { n: 1 } })
    const [chat, plain] = await traces()
    t.equal(chat.info.request_preview, 'last')
    t.equal(plain.info.request_preview, '{"n":1}')
    t.equal(plain.info.response_preview, '{"result":42}')
  })

  t.test('a GET has no inputs; a text response is captured as a string', async t => {
    const { app, one } = adapter.build(t)
    app.get('/text', async () => 'plain answer')
    await app.inject('/text')
    const trace = await one()
    t.equal(trace.root.attributes['mlflow.spanInputs'], undefined)
    t.equal(trace.root.attributes['mlflow.spanOutputs'], 'plain answer')
    t.notOk('request_preview' in trace.info)
    t.equal(trace.info.response_preview, 'plain answer')
  })

  t.test('captureBody: false, globally or per route, records no inputs or outputs', async t => {
    t.test('globally', async t => {
      const { app, one } = adapter.build(t, { captureBody: false })
      app.post('/chat', async () => ({ answer: 'hello' }))
      await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
      const trace = await one()
      t.equal(trace.root.attributes['mlflow.spanInputs'], undefined)
      t.equal(trace.root.attributes['mlflow.spanOutputs'], undefined)
      t.notOk('request_preview' in trace.info)
      t.notOk('response_preview' in trace.info)
    })
  })

  t.test('maxBodyChars truncates the captured JSON text', async t => {
    const { app, one } = adapter.build(t, { maxBodyChars: 40 })
    app.post('/chat', async () => ({ answer: 'y'.repeat(200) }))
    await app.inject({ method: 'POST', url: '/chat', payload: { message: 'x'.repeat(200) } })
    const trace = await one()
    const inputs = trace.root.attributes['mlflow.spanInputs']
    t.type(inputs, 'string', 'a truncated body is a string')
    t.equal(inputs, JSON.stringify({ message: 'x'.repeat(200) }).slice(0, 40) + '…[truncated]')
    const outputs = trace.root.attributes['mlflow.spanOutputs']
    t.type(outputs, 'string')
    t.ok(outputs.endsWith('…[truncated]'))
    t.ok(outputs.length <= 40 + '…[truncated]'.length)
  })

  t.test('untraced requests: no trace, request.mlflow is a working no-op', async t => {
    const untraced = async (t: any, opts: object, register: (app: NeutralApp, handler: (req: NeutralRequest) => Promise<unknown>) => void, urls: string[]): Promise<void> => {
      const { app, traces } = adapter.build(t, opts)
      const seen: unknown[] = []
      register(app, async req => {
        const traced = req.mlflow.traced
        const value = await req.mlflow.span('work', { inputs: 1 }, async span => {
          span.setAttribute('a', 1).setOutputs('o').setLlmResponse({ model: 'm' })
          return 'worked'
        })
        const llm = req.mlflow.llm({ provider: 'p', model: 'm' }, span => {
          span.setLlmResponse({ usage: { input_tokens: 1, output_tokens: 2 } })
          return 'llm'
        })
        const tool = req.mlflow.tool('lookup', { q: 1 }, () => 'tool')
        req.mlflow.setTags({ a: 'b' })
        req.mlflow.setMetadata({ c: 'd' })
        seen.push({ traced, traceId: req.mlflow.traceId, value, llm, tool })
        return { ok: true }
      })
      for (const url of urls) t.equal((await app.inject(url)).statusCode, 200, url)
      t.equal((await traces()).length, 0, 'no trace')
      t.same(seen, urls.map(() => ({ traced: false, traceId: undefined, value: 'worked', llm: 'llm', tool: 'tool' })))
    }
    t.test('ignore: a glob string', async t => {
      await untraced(t, { ignore: '/health*' }, (app, h) => { app.get('/health', h); app.get('/healthz', h) }, ['/health', '/healthz', '/health?x=1'])
    })
    t.test('ignore: a glob array with **', async t => {
      await untraced(t, { ignore: ['/static/**', '/metrics'] }, (app, h) => { app.get('/static/a/b/c.js', h); app.get('/metrics', h) },
        ['/static/a/b/c.js', '/metrics'])
    })
    t.test('ignore: a predicate', async t => {
      await untraced(t, { ignore: (r: NeutralRequest & { url: string }) => r.url.startsWith('/internal') }, (app, h) => { app.get('/internal/a', h); app.get('/internal/b', h) },
        ['/internal/a', '/internal/b'])
    })
    t.test('enabled: false', async t => {
      await untraced(t, { enabled: false }, (app, h) => app.get('/', h), ['/'])
    })
    t.test('MLFLOW_TRACING_ENABLED=false', async t => {
      withEnv(t, { MLFLOW_TRACING_ENABLED: 'false' })
      await untraced(t, {}, (app, h) => app.get('/', h), ['/'])
    })
    t.test('sampleRate: 0', async t => {
      await untraced(t, { sampleRate: 0 }, (app, h) => app.get('/', h), ['/', '/', '/'])
    })
  })

  t.test('ignore leaves other paths traced', async t => {
    const { app, traces } = adapter.build(t, { ignore: ['/health*', '/static/**'], sampleRate: 1 })
    app.get('/health', async () => 'ok')
    app.get('/healthy/deep', async () => 'ok')
    app.get('/static/x/y', async () => 'ok')
    app.get('/api/static/x', async () => 'ok')
    await app.inject('/health')
    await app.inject('/healthy/deep')
    await app.inject('/static/x/y')
    await app.inject('/api/static/x')
    t.same((await traces()).map(x => x.root.name), ['GET /healthy/deep', 'GET /api/static/x'], '* stays within a segment; globs match the whole path')
  })

  t.test('ignore predicate: traced unless it says so', async t => {
    const { app, traces } = adapter.build(t, { ignore: r => r.headers['x-probe'] === '1' })
    app.get('/', async req => ({ traced: req.mlflow.traced }))
    t.same((await app.inject({ url: '/', headers: { 'x-probe': '1' } })).json(), { traced: false })
    t.same((await app.inject('/')).json(), { traced: true })
    t.equal((await traces()).length, 1)
  })

  t.test('app.close() exports what is queued: an owned tracing writing to tracesFile', async t => {
    withEnv(t, { MLFLOW_TRACKING_URI: undefined, MLFLOW_TRACES_FILE: undefined, MLFLOW_EXPERIMENT_ID: undefined, MLFLOW_EXPERIMENT_NAME: undefined })
    const file = join(t.testdir(), 'out', 'traces.jsonl')
    const app = adapter.build(t, { tracesFile: file, logger: silentLogger })
    app.post('/chat', async () => ({ answer: 'hello' }))
    const ids: string[] = []
    for (let i = 0; i < 5; i++) {
      const res = await app.inject({ method: 'POST', url: '/chat', payload: { message: `m${i}` }, headers: { 'x-request-id': `req-${i}` } })
      ids.push(String(res.headers['x-mlflow-trace-id']))
    }
    await app.close()
    t.ok(existsSync(file))
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map(l => JSON.parse(l))
    t.equal(lines.length, 5, 'every trace written by the time close() resolves')
    t.same(lines.map(l => l.info.trace_id), ids)
    t.same(lines.map(l => l.info.client_request_id), ['req-0', 'req-1', 'req-2', 'req-3', 'req-4'])
    const spans = parseSpans(JSON.stringify(lines[0].data))
    t.equal(spans[0].name, 'POST /chat')
    t.same(spans[0].attributes['mlflow.spanInputs'], { message: 'm0' })
  })
})

// Fastify's own routing, route config, stream bodies, HTTP/2, timeouts and logger.

t.test('routes in encapsulated plugins and routes declared before the plugin are traced', async t => {
  const { app, traces } = buildApp(t)
  app.register(async child => {
    child.get('/inner/:id', async req => ({ traced: req.mlflow.traced }))
  }, { prefix: '/v1' })
  t.same((await app.inject('/v1/inner/1')).json(), { traced: true })
  const [inner] = await traces()
  t.equal(inner.root.name, 'GET /v1/inner/:id')
})

t.test('a streamed text body becomes the root outputs and the response preview', async t => {
  const { app, traces } = buildApp(t, { maxBodyChars: 40, redactFields: ['ssn'] })
  const sse = (...events: unknown[]): Readable => Readable.from(events.map(e => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`))
  const openai = (content: string): unknown => ({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: null }] })
  app.post('/openai', async (_req, reply) => reply.header('content-type', 'text/event-stream').send(sse(openai('Hello'), openai(', world'), '[DONE]')))
  app.get('/long', async (_req, reply) => reply.header('content-type', 'text/event-stream').send(sse(...Array.from({ length: 20 }, () => ({ delta: 'abcdef' })))))
  app.get('/ndjson', async (_req, reply) => reply.header('content-type', 'application/x-ndjson').send(Readable.from(['{"ssn":"123-45"}\n', '{"ok":true}\n'])))
  app.get('/binary', async (_req, reply) => reply.header('content-type', 'application/octet-stream').send(Readable.from([Buffer.from([0xff, 0x00, 0x41])])))
  app.get('/untyped', async (_req, reply) => reply.send(Readable.from(['no content type'])))
  app.get('/gzip', async (_req, reply) => reply.header('content-type', 'text/plain').header('content-encoding', 'gzip').send(Readable.from([Buffer.from([0x1f, 0x8b])])))
  app.get('/own-outputs', async (req, reply) => {
    // The route sets the root outputs itself: they win.
    ;(otelTrace.getSpan(req.mlflow.context) as unknown as { setOutputs: (o: unknown) => void }).setOutputs({ mine: true })
    return reply.header('content-type', 'text/plain').send(Readable.from(['streamed']))
  })
  app.get('/no-capture', { config: { mlflow: { captureBody: false } } }, async (_req, reply) => reply.header('content-type', 'text/plain').send(Readable.from(['secret stuff'])))
  // An asynchronous onSend hook after the plugin's: the stream must not start flowing before Fastify pipes it.
  app.register(async scoped => {
    scoped.addHook('onSend', async (_req, _reply, payload) => {
      await new Promise(resolve => setImmediate(resolve))
      return payload
    })
    scoped.get('/late-pipe', async (_req, reply) => {
      const stream = new PassThrough()
      stream.write('data: {"delta":"early "}\n\n')
      stream.end('data: {"delta":"and late"}\n\n')
      return reply.header('content-type', 'text/event-stream').send(stream)
    })
  })

  const bodies: Record<string, string> = {}
  for (const [method, url] of [['POST', '/openai'], ['GET', '/long'], ['GET', '/ndjson'], ['GET', '/binary'], ['GET', '/untyped'], ['GET', '/gzip'], ['GET', '/own-outputs'], ['GET', '/no-capture'], ['GET', '/late-pipe']] as const) {
    bodies[url] = (await app.inject({ method, url })).body
  }
  t.equal(bodies['/late-pipe'], 'data: {"delta":"early "}\n\ndata: {"delta":"and late"}\n\n', 'the client gets every chunk, whatever hooks run before the pipe')
  t.match(bodies['/openai'], /data: \[DONE\]\n\n$/, 'and the body unchanged')
  const all = await traces()
  const root = (route: string): typeof all[number] => all.find(x => x.root.attributes['http.route'] === route) as typeof all[number]
  const outputs = (route: string): any => root(route).root.attributes['mlflow.spanOutputs']
  const content = (route: string): string => outputs(route).choices[0].message.content
  t.same(outputs('/openai'), { object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'Hello, world' }, finish_reason: null }] },
    'OpenAI-style deltas make one assistant message')
  t.equal(root('/openai').info.response_preview, 'Hello, world', 'the preview is the text')
  t.equal(content('/long'), 'abcdef'.repeat(7).slice(0, 40) + '…[truncated]', 'cut at maxBodyChars')
  t.equal(content('/ndjson'), '{"ssn":"[REDACTED]"}\n{"ok":true}\n', 'JSON lines are redacted like other bodies')
  t.equal(content('/late-pipe'), 'early and late')
  for (const route of ['/binary', '/untyped', '/gzip', '/no-capture']) {
    t.equal(outputs(route), undefined, `${route}: not captured`)
    t.equal(root(route).info.response_preview, undefined)
  }
  t.same(outputs('/own-outputs'), { mine: true }, 'outputs the route set win')
  t.equal(app.mlflowTracing.stats().hookErrors, 0)
})

t.test('a Readable body over inject is traced once, after it ends', async t => {
  const { app, one } = buildApp(t)
  app.get('/readable', async (_req, reply) => {
    reply.header('content-type', 'text/plain')
    return reply.send(Readable.from(['a', 'b', 'c']))
  })
  const res = await app.inject('/readable')
  t.equal(res.body, 'abc')
  const trace = await one()
  t.equal(trace.info.state, 'OK')
  t.equal(trace.root.attributes['http.response.status_code'], 200)
})

t.test('a hijacked reply written by hand (SSE) ends its trace when the response ends', async t => {
  const { app, sink, traces } = buildApp(t, {}, { forceCloseConnections: true })
  let release: () => void = () => {}
  const released = new Promise<void>(resolve => { release = resolve })
  app.get('/sse', async (req, reply) => {
    reply.hijack()
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
    reply.raw.write('data: one\n\n')
    await released
    req.mlflow.span('after hijack', {}, () => undefined)
    const lastNs = nowNs()
    reply.raw.end('data: two\n\n')
    return lastNs
  })
  const base = await listen(app)
  const res = await fetch(`${base}/sse`)
  const reader = res.body!.getReader()
  await reader.read()
  await app.mlflowTracing.tracing.flush(2000)
  t.equal(sink.traces.length, 0, 'open while the stream is')
  release()
  for (let r = await reader.read(); r.done !== true; r = await reader.read());
  await until(() => sink.traces.length === 1, 'the SSE trace')
  const [trace] = await traces()
  t.equal(trace.byName('after hijack').parent_span_id, trace.root.span_id)
})

/** A real server whose POST /stream sends one SSE event, then waits on the stream the test holds. */

t.test('pipelined requests whose client leaves while they wait their turn: an ERROR trace each', async t => {
  const { app, sink, traces } = buildApp(t, {}, { forceCloseConnections: true })
  let entered = 0
  let release: () => void = () => {}
  const hang = new Promise<void>(resolve => { release = resolve })
  t.teardown(() => release())
  app.get('/slow/:n', async () => {
    entered++
    await hang
    return 'late'
  })
  const port = Number(new URL(await listen(app)).port)
  const socket = connect(port, '127.0.0.1')
  await new Promise(resolve => socket.once('connect', resolve))
  socket.write('GET /slow/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /slow/2 HTTP/1.1\r\nHost: x\r\n\r\n')
  await until(() => entered === 2, 'both handlers running')
  socket.destroy()
  // Only the first response has the socket; the second learns of the abort from its raw request.
  await until(() => sink.traces.length >= 2, 'both aborted traces')
  release()
  await lateWorkSettled()
  const all = await traces()
  t.equal(all.length, 2, 'one trace each, no more')
  for (const one of all) {
    t.equal(one.info.state, 'ERROR')
    t.equal(one.root.status.message, 'client aborted the request')
  }
})

t.test('HTTP/2: a finished stream and an abandoned one each end their trace once', async t => {
  const { app, sink, traces } = buildApp(t, {}, { http2: true } as FastifyServerOptions)
  let release: () => void = () => {}
  const hang = new Promise<void>(resolve => { release = resolve })
  t.teardown(() => release())
  app.get('/', async () => ({ ok: true }))
  app.get('/slow', async () => {
    await hang
    return 'late'
  })
  const client = http2Connect(await listen(app))
  t.teardown(() => client.close())
  await new Promise<void>((resolve, reject) => {
    const req = client.request({ ':path': '/' }).on('data', () => {}).on('end', resolve).on('error', reject)
    req.end()
  })
  const slow = client.request({ ':path': '/slow' }).on('error', () => {})
  slow.end()
  await until(() => sink.traces.length >= 1, 'the finished trace')
  slow.close()
  await until(() => sink.traces.length >= 2, 'the abandoned trace')
  release()
  await lateWorkSettled()
  const [done, abandoned] = await traces()
  t.equal(sink.traces.length, 2)
  t.equal(done.info.state, 'OK')
  t.equal(done.root.attributes['http.response.status_code'], 200)
  t.equal(abandoned.info.state, 'ERROR')
  t.equal(abandoned.root.status.message, 'client aborted the request')
})

t.test('onTimeout: a hanging handler past connectionTimeout ends the trace as "socket timed out"', async t => {
  const { app, sink, traces } = buildApp(t, {}, { connectionTimeout: 200, forceCloseConnections: true })
  let release: () => void = () => {}
  const hang = new Promise<void>(resolve => { release = resolve })
  let handlerDone: () => void = () => {}
  const finished = new Promise<void>(resolve => { handlerDone = resolve })
  t.teardown(() => release())
  app.get('/hang', async () => {
    try {
      await hang
      return 'never'
    } finally {
      handlerDone()
    }
  })
  const base = await listen(app)
  await t.rejects(fetch(`${base}/hang`), 'the server drops the socket')
  await until(() => sink.traces.length >= 1, 'the timed-out trace')
  release()
  await finished
  await lateWorkSettled()
  const all = await traces()
  t.equal(all.length, 1, 'exactly one trace (the abort that follows the timeout adds none)')
  t.equal(all[0].info.state, 'ERROR')
  t.equal(all[0].root.status.code, 'STATUS_CODE_ERROR')
  t.equal(all[0].root.status.message, 'socket timed out')
})

t.test('log correlation: request.log lines and "request completed" carry the trace id', async t => {
  t.test('default key mlflow_trace_id', async t => {
    const { stream, lines } = logCapture()
    const { app, one } = buildApp(t, {}, { logger: { level: 'info', stream } })
    app.post('/chat', async req => {
      req.log.info('handler says hi')
      await new Promise(resolve => setImmediate(resolve))
      req.log.warn({ extra: 1 }, 'after an await')
      return { ok: true }
    })
    const res = await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
    const trace = await one()
    t.equal(res.headers['x-mlflow-trace-id'], trace.info.trace_id)
    const mine = lines.filter(l => l.reqId === res.headers['request-id'] || ['handler says hi', 'after an await', 'request completed'].includes(l.msg))
    for (const msg of ['handler says hi', 'after an await', 'request completed']) {
      const line = mine.find(l => l.msg === msg)
      t.ok(line, `logged: ${msg}`)
      t.equal(line?.mlflow_trace_id, trace.info.trace_id, `${msg} carries the trace id`)
    }
  })
  t.test('logKey: traceId', async t => {
    const { stream, lines } = logCapture()
    const { app, one } = buildApp(t, { logKey: 'traceId' }, { logger: { level: 'info', stream } })
    app.get('/', async req => {
      req.log.info('handler line')
      return 'ok'
    })
    await app.inject('/')
    const trace = await one()
    for (const msg of ['handler line', 'request completed']) {
      const line = lines.find(l => l.msg === msg)
      t.equal(line?.traceId, trace.info.trace_id, msg)
      t.notOk(line !== undefined && 'mlflow_trace_id' in line)
    }
  })
  t.test('a 404 and a 500 log their trace id too', async t => {
    const { stream, lines } = logCapture()
    const { app, traces } = buildApp(t, {}, { logger: { level: 'info', stream } })
    app.get('/boom', async () => { throw new Error('boom') })
    await app.inject('/missing')
    await app.inject('/boom')
    const [missing, boom] = await traces()
    const completed = lines.filter(l => l.msg === 'request completed')
    t.same(completed.map(l => l.mlflow_trace_id), [missing.info.trace_id, boom.info.trace_id])
    const errorLine = lines.find(l => l.level === 50 && l.err?.message === 'boom')
    t.equal(errorLine?.mlflow_trace_id, boom.info.trace_id, "Fastify's error log line carries it")
  })
  t.test('untraced requests log without a trace id', async t => {
    const { stream, lines } = logCapture()
    const { app } = buildApp(t, { ignore: '/health' }, { logger: { level: 'info', stream } })
    app.get('/health', async req => {
      req.log.info('probe')
      return 'ok'
    })
    await app.inject('/health')
    const line = lines.find(l => l.msg === 'probe')
    t.ok(line)
    t.notOk(line !== undefined && 'mlflow_trace_id' in line)
  })
  t.test('concurrent requests each log their own trace id', async t => {
    const { stream, lines } = logCapture()
    const { app, traces } = buildApp(t, {}, { logger: { level: 'info', stream } })
    app.get('/:n', async (req: FastifyRequest<{ Params: { n: string } }>) => {
      await new Promise(resolve => setTimeout(resolve, Number(req.params.n) % 7))
      req.log.info({ n: req.params.n }, 'work')
      return 'ok'
    })
    const responses = await Promise.all(Array.from({ length: 30 }, (_, i) => app.inject(`/${i}`)))
    const all = await traces()
    t.equal(all.length, 30)
    for (let i = 0; i < 30; i++) {
      const line = lines.find(l => l.msg === 'work' && l.n === String(i))
      t.equal(line?.mlflow_trace_id, responses[i].headers['x-mlflow-trace-id'])
    }
  })
})

t.test('captureBody per route (config.mlflow)', async t => {
  t.test('per route', async t => {
    const { app, traces } = buildApp(t)
    app.post('/private', { config: { mlflow: { captureBody: false } } }, async () => ({ answer: 'secret' }))
    app.post('/public', async () => ({ answer: 'hello' }))
    await app.inject({ method: 'POST', url: '/private', payload: { message: 'hi' } })
    await app.inject({ method: 'POST', url: '/public', payload: { message: 'hi' } })
    const [priv, pub] = await traces()
    t.equal(priv.root.attributes['mlflow.spanInputs'], undefined)
    t.equal(priv.root.attributes['mlflow.spanOutputs'], undefined)
    t.notOk(priv.raw.spansJson.includes('secret'))
    t.same(pub.root.attributes['mlflow.spanInputs'], { message: 'hi' })
  })
  t.test('per route true overrides a global false', async t => {
    const { app, one } = buildApp(t, { captureBody: false })
    app.post('/chat', { config: { mlflow: { captureBody: true } } }, async () => ({ answer: 'hello' }))
    await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
    t.same((await one()).root.attributes['mlflow.spanInputs'], { message: 'hi' })
  })
})

t.test('config: { mlflow: false } leaves a route untraced, with a working no-op request.mlflow', async t => {
  const { app, traces } = buildApp(t)
  app.get('/quiet', { config: { mlflow: false } }, async req => ({ traced: req.mlflow.traced, value: req.mlflow.tool('lookup', {}, () => 'tool') }))
  t.same((await app.inject('/quiet')).json(), { traced: false, value: 'tool' })
  t.equal((await traces()).length, 0)
})

t.test('AGENT per route (config.mlflow.spanType) and a body that failed validation', async t => {
  const { app, traces } = buildApp(t)
  app.post('/agent', { config: { mlflow: { spanType: 'AGENT' } } }, async () => ({ ok: true }))
  app.post('/schema', { schema: { body: { type: 'object', required: ['message'] } } }, async () => 'ok')
  t.equal((await app.inject({ method: 'POST', url: '/agent', payload: {} })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/schema', payload: { nope: 1 } })).statusCode, 400)
  const [agent, schema] = await traces()
  t.equal(agent.root.name, 'POST /agent')
  t.equal(agent.root.attributes['mlflow.spanType'], 'AGENT')
  t.equal(schema.info.state, 'OK', 'a 400 is not an error of the service')
  t.same(schema.root.attributes['mlflow.spanInputs'], { nope: 1 }, 'a request that failed validation still has its body')
})
