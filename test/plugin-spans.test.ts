// request.mlflow.span / llm / tool: child spans of the request's root, the active OTel span, and
// the GenAI attributes of LLM calls.
import t from 'tap'
import { request as httpRequest } from 'node:http'
import { PassThrough } from 'node:stream'
import { context, ROOT_CONTEXT, trace as otelTrace, type Span } from '@opentelemetry/api'
import { buildApp, exceptionMessages } from './helpers/plugin-app'

const b64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64')
const activeSpanId = (): string | undefined => {
  const id = otelTrace.getActiveSpan()?.spanContext().spanId
  return id === undefined ? undefined : b64(id)
}

t.test('span, llm and tool create children of the root', async t => {
  const { app, one } = buildApp(t)
  app.post('/chat', async req => {
    const docs = await req.mlflow.span('retrieve', { type: 'RETRIEVER', inputs: { q: 'hi' } }, async () => ['doc1'])
    const tool = req.mlflow.tool('weather', { city: 'Paris' }, () => ({ temp: 20 }))
    const answer = await req.mlflow.llm({ provider: 'openai', model: 'gpt-4o' }, async () => 'hello')
    return { docs, tool, answer }
  })
  const res = await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
  t.same(res.json(), { docs: ['doc1'], tool: { temp: 20 }, answer: 'hello' })
  const trace = await one()
  t.same(trace.spans.map(s => s.name), ['POST /chat', 'retrieve', 'weather', 'chat gpt-4o'])
  for (const child of trace.spans.slice(1)) {
    t.equal(child.parent_span_id, trace.root.span_id, `${child.name} is a child of the root`)
    t.equal(child.trace_id, trace.root.trace_id)
    t.equal(child.attributes['mlflow.traceRequestId'], trace.info.trace_id)
    t.equal(child.status.code, 'STATUS_CODE_OK')
    t.ok(child.start >= trace.root.start && child.end <= trace.root.end, `${child.name} lies within the root`)
  }
  const retrieve = trace.byName('retrieve')
  t.equal(retrieve.attributes['mlflow.spanType'], 'RETRIEVER')
  t.same(retrieve.attributes['mlflow.spanInputs'], { q: 'hi' })
  t.same(retrieve.attributes['mlflow.spanOutputs'], ['doc1'], 'the return value becomes the outputs')
  const weather = trace.byName('weather')
  t.equal(weather.attributes['mlflow.spanType'], 'TOOL')
  t.same(weather.attributes['mlflow.spanInputs'], { city: 'Paris' })
  t.same(weather.attributes['mlflow.spanOutputs'], { temp: 20 })
  t.equal(trace.byName('chat gpt-4o').attributes['mlflow.spanType'], 'LLM')
})

t.test('a span without a type is UNKNOWN; explicit outputs win over the return value; undefined sets none', async t => {
  const { app, one } = buildApp(t)
  app.get('/', async req => {
    req.mlflow.span('plain', {}, () => undefined)
    req.mlflow.span('explicit', { attributes: { custom: 'x', n: 2 } }, span => {
      span.setOutputs({ chosen: true })
      return 'ignored'
    })
    return 'ok'
  })
  await app.inject('/')
  const trace = await one()
  const plain = trace.byName('plain')
  t.equal(plain.attributes['mlflow.spanType'], 'UNKNOWN')
  t.notOk('mlflow.spanOutputs' in plain.attributes)
  const explicit = trace.byName('explicit')
  t.same(explicit.attributes['mlflow.spanOutputs'], { chosen: true })
  t.equal(explicit.attributes.custom, 'x')
  t.equal(explicit.rawAttributes.n, '2')
})

t.test('only plain data returned by a callback becomes outputs', async t => {
  const { app, one } = buildApp(t)
  class Result { constructor (readonly x = 1) {} }
  app.get('/', async req => {
    req.mlflow.span('string', {}, () => 'text')
    req.mlflow.span('number', {}, () => 0)
    req.mlflow.span('false', {}, () => false)
    req.mlflow.span('array', {}, () => [1, 'a'])
    req.mlflow.span('object', {}, () => ({ a: { b: 1 } }))
    req.mlflow.span('null-proto', {}, () => Object.assign(Object.create(null), { k: 'v' }))
    req.mlflow.span('null', {}, () => null)
    req.mlflow.span('instance', {}, () => new Result())
    req.mlflow.span('stream', {}, () => new PassThrough())
    req.mlflow.span('function', {}, () => () => 1)
    await req.mlflow.span('async-stream', {}, async () => new PassThrough())
    return 'ok'
  })
  await app.inject('/')
  const trace = await one()
  const outputs = (name: string): unknown => trace.byName(name).attributes['mlflow.spanOutputs']
  t.equal(outputs('string'), 'text')
  t.equal(outputs('number'), 0)
  t.equal(outputs('false'), false)
  t.same(outputs('array'), [1, 'a'])
  t.same(outputs('object'), { a: { b: 1 } })
  t.same(outputs('null-proto'), { k: 'v' })
  for (const name of ['null', 'instance', 'stream', 'function', 'async-stream']) t.equal(outputs(name), undefined, `${name}: no outputs`)
  for (const span of trace.spans) t.equal(span.status.code, 'STATUS_CODE_OK')
})

for (const method of ['GET', 'POST'] as const) {
  t.test(`active span (${method}): the root in the handler, the child inside a callback`, async t => {
    const { app, one } = buildApp(t, { activeRootSpan: true })
    const seen: Record<string, string | undefined> = {}
    app.route({
      method,
      url: '/chat',
      preHandler: async () => { seen.preHandler = activeSpanId() },
      handler: async req => {
        seen.handler = activeSpanId()
        await new Promise(resolve => setTimeout(resolve, 1))
        seen.afterAwait = activeSpanId()
        await req.mlflow.span('child', {}, async span => {
          seen.childParam = b64(span.spanContext().spanId)
          seen.child = activeSpanId()
          await new Promise(resolve => setImmediate(resolve))
          seen.childAfterAwait = activeSpanId()
          req.mlflow.span('grandchild', {}, () => { seen.grandchild = activeSpanId() })
        })
        seen.afterChild = activeSpanId()
        return 'ok'
      }
    })
    const res = await app.inject(method === 'POST' ? { method, url: '/chat', payload: { message: 'hi' } } : { method, url: '/chat' })
    t.equal(res.statusCode, 200)
    const trace = await one()
    const root = trace.root.span_id
    t.equal(seen.preHandler, root, 'a route preHandler sees the root')
    t.equal(seen.handler, root, 'the handler sees the root')
    t.equal(seen.afterAwait, root, 'still after an await')
    t.equal(seen.afterChild, root, 'and again after the child ended')
    t.equal(seen.child, trace.byName('child').span_id, 'inside the callback, the child')
    t.equal(seen.childParam, seen.child, 'the span passed to the callback is the active one')
    t.equal(seen.childAfterAwait, seen.child)
    t.equal(seen.grandchild, trace.byName('grandchild').span_id)
    t.equal(trace.byName('grandchild').parent_span_id, trace.byName('child').span_id)
  })
}

t.test('by default the root is not active, yet spans nest and request.mlflow.context reaches the root', async t => {
  const { app, one } = buildApp(t)
  const seen: Record<string, string | undefined> = {}
  app.post('/chat', async req => {
    seen.handler = activeSpanId()
    await req.mlflow.span('child', {}, async () => {
      await new Promise(resolve => setImmediate(resolve))
      seen.child = activeSpanId()
      req.mlflow.span('grandchild', {}, () => undefined)
    })
    context.with(req.mlflow.context, () => {
      seen.withContext = activeSpanId()
      app.mlflowTracing.tracing.tracer.startActiveSpan('otel-direct', (span: Span) => span.end())
    })
    return 'ok'
  })
  await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
  const trace = await one()
  t.equal(seen.handler, undefined, 'no active span in the handler: no AsyncLocalStorage per request')
  t.equal(seen.child, trace.byName('child').span_id, 'inside a span callback, its span')
  t.equal(trace.byName('grandchild').parent_span_id, trace.byName('child').span_id)
  t.equal(seen.withContext, trace.root.span_id, 'context.with(request.mlflow.context) makes the root active')
  t.equal(trace.byName('otel-direct').parent_span_id, trace.root.span_id)
})

t.test('the root is active in the handler even when the context is lost before validation', async t => {
  // Fastify 5.12 keeps the async context across body parsing; older 5.x releases (and hooks that
  // call done() from elsewhere) did not. With activeRootSpan, preHandler re-enters the request's context.
  const { app, one } = buildApp(t, { activeRootSpan: true })
  app.addHook('preParsing', (_req, _reply, payload, done) => { context.with(ROOT_CONTEXT, () => done(null, payload)) })
  let active: string | undefined
  app.post('/chat', async () => {
    active = activeSpanId()
    return 'ok'
  })
  await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
  const trace = await one()
  t.equal(active, trace.root.span_id)
})

t.test('active span with a larger body parsed in several chunks', async t => {
  const { app, one } = buildApp(t, { activeRootSpan: true })
  let seen: string | undefined
  app.post('/chat', async req => {
    seen = activeSpanId()
    return (req.body as { text: string }).text.length
  })
  const res = await app.inject({ method: 'POST', url: '/chat', payload: { text: 'x'.repeat(200_000) } })
  t.equal(res.body, '200000')
  t.equal(seen, (await one()).root.span_id)
})

t.test('active span with a body that arrives in pieces over a real socket', async t => {
  const { app, one } = buildApp(t, { activeRootSpan: true }, { forceCloseConnections: true })
  const seen: Record<string, string | undefined> = {}
  app.post('/chat', async req => {
    seen.handler = activeSpanId()
    await req.mlflow.span('child', {}, async () => { seen.child = activeSpanId() })
    return req.body
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const body = await new Promise<string>((resolve, reject) => {
    const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/chat', headers: { 'content-type': 'application/json', 'content-length': '16' } }, res => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('end', () => resolve(text))
    })
    req.on('error', reject)
    // The second piece is sent only once the server has started reading the first.
    req.write('{"message":', () => setTimeout(() => req.end('"hi"}'), 20))
  })
  t.same(JSON.parse(body), { message: 'hi' })
  const trace = await one()
  t.equal(seen.handler, trace.root.span_id)
  t.equal(seen.child, trace.byName('child').span_id)
  t.equal(trace.byName('child').parent_span_id, trace.root.span_id)
  t.same(trace.root.attributes['mlflow.spanInputs'], { message: 'hi' })
})

t.test('a span keeps its inputs as they were when set, however the agent changes them afterwards', async t => {
  const { app, one } = buildApp(t)
  app.post('/chat', async req => {
    const messages = [{ role: 'user', content: 'hi' }]
    await req.mlflow.llm({ provider: 'openai', model: 'm', name: 'first', inputs: { messages } }, async () => {
      messages.push({ role: 'assistant', content: 'hello' })
    })
    await req.mlflow.llm({ provider: 'openai', model: 'm', name: 'second', inputs: { messages } }, async () => undefined)
    return 'ok'
  })
  await app.inject({ method: 'POST', url: '/chat', payload: {} })
  const trace = await one()
  t.equal(trace.byName('first').attributes['mlflow.spanInputs'].messages.length, 1)
  t.equal(trace.byName('second').attributes['mlflow.spanInputs'].messages.length, 2)
})

t.test('nested spans nest, whatever helper creates them', async t => {
  const { app, one } = buildApp(t)
  app.post('/agent', async req => {
    return await req.mlflow.span('plan', { type: 'AGENT' }, async () => {
      const result = await req.mlflow.tool('search', { q: 'x' }, async () => {
        return await req.mlflow.llm({ provider: 'openai', model: 'gpt-4o-mini', name: 'rerank' }, async () => 'ranked')
      })
      req.mlflow.span('summarize', {}, () => 'sum')
      return result
    })
  })
  await app.inject({ method: 'POST', url: '/agent', payload: {} })
  const trace = await one()
  const [plan, search, rerank, summarize] = ['plan', 'search', 'rerank', 'summarize'].map(trace.byName)
  t.equal(plan.parent_span_id, trace.root.span_id)
  t.equal(search.parent_span_id, plan.span_id)
  t.equal(rerank.parent_span_id, search.span_id)
  t.equal(summarize.parent_span_id, plan.span_id)
  t.equal(plan.attributes['mlflow.spanOutputs'], 'ranked')
  t.equal(trace.root.attributes['mlflow.spanOutputs'], 'ranked')
})

t.test('concurrent children started from the handler are siblings', async t => {
  const { app, one } = buildApp(t)
  app.get('/', async req => {
    await Promise.all([1, 2, 3].map(async n => await req.mlflow.span(`par-${n}`, {}, async () => {
      await new Promise(resolve => setTimeout(resolve, 4 - n))
      req.mlflow.span(`inner-${n}`, {}, () => n)
    })))
    return 'ok'
  })
  await app.inject('/')
  const trace = await one()
  for (const n of [1, 2, 3]) {
    t.equal(trace.byName(`par-${n}`).parent_span_id, trace.root.span_id)
    t.equal(trace.byName(`inner-${n}`).parent_span_id, trace.byName(`par-${n}`).span_id, `inner-${n} under its own parent`)
  }
})

t.test('a throwing callback: span ERROR with the exception, the error reaches the handler', async t => {
  const { app, one } = buildApp(t)
  const caught: string[] = []
  app.get('/', async req => {
    try {
      req.mlflow.span('sync-fail', {}, () => { throw new Error('sync boom') })
    } catch (err) {
      caught.push((err as Error).message)
    }
    try {
      await req.mlflow.tool('async-fail', {}, async () => {
        await new Promise(resolve => setImmediate(resolve))
        throw new TypeError('async boom')
      })
    } catch (err) {
      caught.push(`${(err as Error).name}: ${(err as Error).message}`)
    }
    try {
      await req.mlflow.span('reject-string', {}, async () => { throw 'just a string' }) // eslint-disable-line no-throw-literal
    } catch (err) {
      caught.push(String(err))
    }
    return 'recovered'
  })
  const res = await app.inject('/')
  t.equal(res.body, 'recovered')
  t.same(caught, ['sync boom', 'TypeError: async boom', 'just a string'], 'the same errors are rethrown')
  const trace = await one()
  t.equal(trace.info.state, 'OK', 'a handled child error does not fail the request')
  const sync = trace.byName('sync-fail')
  t.equal(sync.status.code, 'STATUS_CODE_ERROR')
  t.equal(sync.status.message, 'sync boom')
  t.same(exceptionMessages(sync), ['sync boom'])
  const asyncFail = trace.byName('async-fail')
  t.equal(asyncFail.status.code, 'STATUS_CODE_ERROR')
  t.equal(asyncFail.events[0].attributes['exception.type'], 'TypeError')
  t.same(exceptionMessages(asyncFail), ['async boom'])
  t.same(exceptionMessages(trace.byName('reject-string')), ['just a string'])
  t.equal(trace.byName('reject-string').status.message, 'just a string')
})

t.test('an unhandled child error fails the request and both spans', async t => {
  const { app, one } = buildApp(t)
  app.post('/chat', async req => await req.mlflow.llm({ provider: 'openai', model: 'gpt-4o' }, async () => {
    throw new Error('rate limited')
  }))
  const res = await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
  t.equal(res.statusCode, 500)
  const trace = await one()
  t.equal(trace.info.state, 'ERROR')
  t.same(exceptionMessages(trace.byName('chat gpt-4o')), ['rate limited'])
  t.same(exceptionMessages(trace.root), ['rate limited'])
})

t.test('the LLM helper writes the GenAI attributes and token usage', async t => {
  const { app, one } = buildApp(t)
  app.post('/chat', async req => {
    const first = await req.mlflow.llm({ provider: 'openai', model: 'gpt-4o', inputs: [{ role: 'user', content: 'hi' }] }, async span => {
      span.setLlmResponse({
        model: 'gpt-4o-2024-08-06', id: 'chatcmpl-1', finishReasons: ['stop'],
        usage: { input_tokens: 10, output_tokens: 5 }, outputs: { role: 'assistant', content: 'hello' }
      })
      return 'ignored, outputs already set'
    })
    await req.mlflow.llm({ provider: 'anthropic', model: 'claude-x', operation: 'text_completion', name: 'second' }, async span => {
      span.setLlmResponse({ usage: { input_tokens: 7, output_tokens: 3, total_tokens: 11 } })
    })
    await req.mlflow.span('manual', {}, async span => { span.setTokenUsage({ input_tokens: 1, output_tokens: 1 }) })
    return { first }
  })
  await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' }, headers: { 'x-session-id': 'sess-1' } })
  const trace = await one()
  const llm = trace.byName('chat gpt-4o')
  t.match(llm.attributes, {
    'mlflow.spanType': 'LLM',
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': 'openai',
    'gen_ai.request.model': 'gpt-4o',
    'gen_ai.response.model': 'gpt-4o-2024-08-06',
    'gen_ai.response.id': 'chatcmpl-1',
    'gen_ai.response.finish_reasons': ['stop'],
    'gen_ai.usage.input_tokens': 10,
    'gen_ai.usage.output_tokens': 5,
    'gen_ai.conversation.id': 'sess-1',
    'mlflow.chat.tokenUsage': { input_tokens: 10, output_tokens: 5, total_tokens: 15 },
    'mlflow.spanInputs': [{ role: 'user', content: 'hi' }],
    'mlflow.spanOutputs': {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      model: 'gpt-4o-2024-08-06',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 }
    }
  })
  t.same(Object.keys(llm.attributes['mlflow.spanOutputs']), ['id', 'object', 'model', 'choices', 'usage'], 'in OpenAI\'s field order')
  const second = trace.byName('second')
  t.equal(second.attributes['gen_ai.operation.name'], 'text_completion')
  t.equal(second.attributes['gen_ai.provider.name'], 'anthropic')
  t.notOk('gen_ai.response.model' in second.attributes)
  t.same(second.attributes['mlflow.chat.tokenUsage'], { input_tokens: 7, output_tokens: 3, total_tokens: 11 })
  t.same(JSON.parse(trace.info.trace_metadata['mlflow.trace.tokenUsage']), { input_tokens: 18, output_tokens: 9, total_tokens: 28 },
    'trace token usage sums the spans')
})

t.test('LLM outputs are recorded as a chat completion, the shape the MLflow UI shows as a chat', async t => {
  const { app, one } = buildApp(t)
  const reply = { role: 'assistant', content: 'hi' }
  const completion = { id: 'c-9', choices: [{ index: 0, message: reply, finish_reason: 'length' }] }
  const given: Record<string, unknown> = {
    string: 'hi',
    message: reply,
    messages: [reply, { role: 'assistant', content: null, tool_calls: [{ id: 't1' }] }],
    completion,
    'content only': { content: 'hi' },
    other: { text: 'hi' },
    'not all messages': [reply, 'hi'],
    'empty array': []
  }
  app.get('/', async req => {
    for (const name in given) {
      req.mlflow.llm({ provider: 'p', model: 'm', name }, span => { span.setLlmResponse({ finishReasons: ['stop', 'tool_calls'], outputs: given[name] }) })
    }
    req.mlflow.llm({ provider: 'p', model: 'm', name: 'bare' }, span => { span.setLlmResponse({ outputs: 'hi' }) })
    req.mlflow.llm({ provider: 'p', model: 'm', name: 'returns a string' }, () => 'hi')
    req.mlflow.llm({ provider: 'p', model: 'm', name: 'returns a message' }, () => reply)
    req.mlflow.llm({ provider: 'p', model: 'm', name: 'returns an object' }, () => ({ answer: 'hi' }))
    return 'ok'
  })
  await app.inject('/')
  const trace = await one()
  const outputs = (name: string): unknown => trace.byName(name).attributes['mlflow.spanOutputs']
  const chat = (...choices: unknown[]): unknown => ({ object: 'chat.completion', choices })
  t.same(outputs('string'), chat({ index: 0, message: reply, finish_reason: 'stop' }), 'a string is one assistant message')
  t.same(outputs('message'), chat({ index: 0, message: reply, finish_reason: 'stop' }), 'a message is the one choice')
  t.same(outputs('messages'), chat(
    { index: 0, message: reply, finish_reason: 'stop' },
    { index: 1, message: (given.messages as unknown[])[1], finish_reason: 'tool_calls' }
  ), 'messages are the choices, each with its finish reason')
  t.same(outputs('completion'), completion, 'a chat completion is kept as given')
  t.same(outputs('content only'), { content: 'hi' }, 'a message needs a role and a content, as MLflow tells one')
  t.same(outputs('other'), { text: 'hi' }, 'other objects are kept as given')
  t.same(outputs('not all messages'), [reply, 'hi'])
  t.same(outputs('empty array'), [])
  t.same(outputs('bare'), chat({ index: 0, message: reply, finish_reason: null }), 'no finish reason given: null, as OpenAI writes it')
  t.same(outputs('returns a string'), chat({ index: 0, message: reply, finish_reason: null }), 'a return value is recorded the same way')
  t.same(outputs('returns a message'), chat({ index: 0, message: reply, finish_reason: null }))
  t.same(outputs('returns an object'), { answer: 'hi' })
})

t.test('no session: no gen_ai.conversation.id; no usage: no trace token usage', async t => {
  const { app, one } = buildApp(t)
  app.get('/', async req => await req.mlflow.llm({ provider: 'p', model: 'm' }, () => 'x'))
  await app.inject('/')
  const trace = await one()
  t.notOk('gen_ai.conversation.id' in trace.byName('chat m').attributes)
  t.notOk('mlflow.trace.tokenUsage' in trace.info.trace_metadata)
})

t.test('token usage of a span under a span that reports usage is not counted twice', async t => {
  const { app, one } = buildApp(t)
  app.get('/', async req => {
    await req.mlflow.llm({ provider: 'p', model: 'outer' }, async outer => {
      await req.mlflow.llm({ provider: 'p', model: 'inner' }, async inner => {
        inner.setLlmResponse({ usage: { input_tokens: 2, output_tokens: 2 } })
      })
      outer.setLlmResponse({ usage: { input_tokens: 5, output_tokens: 5 } })
    })
    return 'ok'
  })
  await app.inject('/')
  const trace = await one()
  t.same(JSON.parse(trace.info.trace_metadata['mlflow.trace.tokenUsage']), { input_tokens: 5, output_tokens: 5, total_tokens: 10 })
})

t.test('tracer.startActiveSpan in the handler nests under the root (and under a child)', async t => {
  const { app, one } = buildApp(t, { activeRootSpan: true })
  app.post('/chat', async req => {
    const tracer = app.mlflowTracing.tracing.tracer
    await tracer.startActiveSpan('otel-direct', async (span: Span) => {
      span.setAttribute('lib', 'x')
      tracer.startActiveSpan('otel-nested', (inner: Span) => inner.end())
      span.end()
    })
    await req.mlflow.span('child', {}, async () => {
      const s = tracer.startSpan('otel-under-child')
      s.end()
    })
    return 'ok'
  })
  await app.inject({ method: 'POST', url: '/chat', payload: { message: 'hi' } })
  const trace = await one()
  t.equal(trace.byName('otel-direct').parent_span_id, trace.root.span_id)
  t.equal(trace.byName('otel-direct').attributes.lib, 'x')
  t.equal(trace.byName('otel-nested').parent_span_id, trace.byName('otel-direct').span_id)
  t.equal(trace.byName('otel-under-child').parent_span_id, trace.byName('child').span_id)
  t.equal(new Set(trace.spans.map(s => s.trace_id)).size, 1)
})

t.test('a child left open when the response ends is closed with the root', async t => {
  const { app, one } = buildApp(t)
  app.get('/', async req => {
    app.mlflowTracing.tracing.tracer.startSpan('never ended', {}, req.mlflow.context)
    return 'ok'
  })
  await app.inject('/')
  const trace = await one()
  const open = trace.byName('never ended')
  t.equal(open.parent_span_id, trace.root.span_id)
  t.ok(open.end <= trace.root.end)
  t.ok(open.end > 0n)
})
