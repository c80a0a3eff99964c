// Many requests at once: each trace holds its own user, session, request id and spans, never a
// neighbour's.
import t from 'tap'
import { trace as otelTrace } from '@opentelemetry/api'
import { forEachAdapter } from './helpers/adapters'
import { withEnv } from './helpers/plugin-app'

const N = 1000

forEachAdapter(t, (t, adapter) => {
  t.test(`${N} concurrent requests each get exactly their own trace`, async t => {
    withEnv(t, { DATABRICKS_APP_NAME: undefined })
    const app = adapter.build(t, { trustForwardedIdentity: true, activeRootSpan: true })
    const { traces } = app
    const mismatches: string[] = []
    app.post('/chat', async req => {
      const n = (req.body as { n: number }).n
      const before = req.mlflow.traceId
      // A small, varying delay (deterministic per request) so that requests interleave.
      await new Promise(resolve => setTimeout(resolve, (n * 7919) % 11))
      const active = otelTrace.getActiveSpan()?.spanContext().traceId
      if (`tr-${String(active)}` !== req.mlflow.traceId || before !== req.mlflow.traceId) mismatches.push(`req-${n}: active span of another trace`)
      if (req.mlflow.user !== `user-${n}@example.com` || req.mlflow.session !== `session-${n}`) mismatches.push(`req-${n}: wrong user or session`)
      const answer = await req.mlflow.llm({ provider: 'openai', model: 'gpt-4o', inputs: { n } }, async span => {
        await new Promise(resolve => setImmediate(resolve))
        span.setLlmResponse({ id: `resp-${n}`, usage: { input_tokens: n, output_tokens: 1 } })
        return `answer-${n}`
      })
      return { n, answer, traceId: req.mlflow.traceId }
    })
    const responses = await Promise.all(Array.from({ length: N }, async (_, n) => await app.inject({
      method: 'POST',
      url: '/chat',
      payload: { n, message: `message-${n}` },
      headers: { 'x-forwarded-email': `user-${n}@example.com`, 'x-session-id': `session-${n}`, 'x-request-id': `req-${n}` }
    })))
    t.same(mismatches, [], 'inside every handler, request.mlflow and the active span were its own')
    for (let n = 0; n < N; n++) {
      if (responses[n].statusCode !== 200 || responses[n].json().answer !== `answer-${n}`) t.fail(`response ${n}: ${responses[n].body}`)
    }

    const all = await traces()
    t.equal(all.length, N, `exactly ${N} traces`)
    t.match(app.stats(), { exported: N, dropped: { queue_full: 0, too_large: 0, shutdown: 0 }, lateSpans: 0 })
    const byRequest = new Map(all.map(x => [x.info.client_request_id, x]))
    t.equal(byRequest.size, N, 'one trace per request id')
    t.equal(new Set(all.map(x => x.info.trace_id)).size, N, 'distinct trace ids')

    let checked = 0
    const problems: string[] = []
    for (let n = 0; n < N; n++) {
      const trace = byRequest.get(`req-${n}`)
      if (trace === undefined) {
        problems.push(`req-${n}: no trace`)
        continue
      }
      const md = trace.info.trace_metadata
      const expect = (ok: boolean, what: string): void => { if (!ok) problems.push(`req-${n}: ${what}`) }
      expect(md['mlflow.trace.user'] === `user-${n}@example.com`, `user ${md['mlflow.trace.user']}`)
      expect(md['mlflow.trace.session'] === `session-${n}`, `session ${md['mlflow.trace.session']}`)
      expect(trace.root.attributes['user.id'] === `user-${n}@example.com`, 'root user.id')
      expect(trace.root.attributes['session.id'] === `session-${n}`, 'root session.id')
      expect(responses[n].headers['x-mlflow-trace-id'] === trace.info.trace_id, 'response header')
      expect(responses[n].json().traceId === trace.info.trace_id, 'request.mlflow.traceId')
      expect(trace.info.request_preview === `message-${n}`, `request preview ${String(trace.info.request_preview)}`)
      expect(JSON.stringify(trace.root.attributes['mlflow.spanInputs']) === JSON.stringify({ n, message: `message-${n}` }), 'inputs')
      expect(trace.spans.length === 2, `${trace.spans.length} spans`)
      const llm = trace.spans.find(s => s.name === 'chat gpt-4o')
      if (llm === undefined) {
        problems.push(`req-${n}: no llm span`)
        continue
      }
      expect(llm.attributes['gen_ai.conversation.id'] === `session-${n}`, `conversation id ${llm.attributes['gen_ai.conversation.id']}`)
      expect(llm.attributes['gen_ai.response.id'] === `resp-${n}`, 'response id')
      expect(llm.parent_span_id === trace.root.span_id, 'llm parent is its own root')
      expect(llm.trace_id === trace.root.trace_id, 'llm trace id is its root\'s')
      expect(llm.attributes['mlflow.traceRequestId'] === trace.info.trace_id, 'llm mlflow.traceRequestId')
      expect(JSON.parse(md['mlflow.trace.tokenUsage']).input_tokens === n, 'token usage of its own llm call')
      checked++
    }
    t.same(problems, [], 'no trace holds another request\'s data')
    t.equal(checked, N)
  })

  t.test('concurrent requests on distinct apps with distinct sinks stay apart', async t => {
    const a = adapter.build(t, { metadata: { app: 'a' } })
    const b = adapter.build(t, { metadata: { app: 'b' } })
    for (const app of [a, b]) {
      app.get('/', async req => await req.mlflow.span('work', {}, async () => {
        await new Promise(resolve => setImmediate(resolve))
        return req.mlflow.traceId
      }))
    }
    await Promise.all(Array.from({ length: 50 }, async (_, i) => await (i % 2 === 0 ? a : b).inject('/')))
    const [ta, tb] = [await a.traces(), await b.traces()]
    t.equal(ta.length, 25)
    t.equal(tb.length, 25)
    t.ok(ta.every(x => x.info.trace_metadata.app === 'a' && x.spans.length === 2))
    t.ok(tb.every(x => x.info.trace_metadata.app === 'b' && x.spans.length === 2))
  })
})
