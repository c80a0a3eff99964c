// Destination health against a fake server that goes down and comes back (refused, 5xx, 429,
// hangs): one probe at a time, no attempts charged for waiting, full speed once it answers. And
// the adaptive concurrency limit on its own.
import t, { type Test } from 'tap'
import { AdaptiveConcurrency } from '../plugin/export/adaptive-concurrency'
import type { QueueOptions } from '../plugin/export/queue'
import { MlflowTracing } from '../plugin/tracing'
import { until } from './helpers/plugin-app'
import { defaultAnswer, FakeServer, recordingLogger, type FakeResponse, type RecordedRequest } from './helpers/fake-server'

const TRACES = '/api/3.0/mlflow/traces'
const EXPERIMENT = '/api/2.0/mlflow/experiments/get'

type Outage = 'up' | '503' | '429' | 'hang' | 'exports503'

/** A fake whose every call fails the way `state.mode` says, until it is set back to 'up'. */
async function switchable (t: Test): Promise<{ server: FakeServer, state: { mode: Outage } }> {
  const server = await FakeServer.start()
  t.teardown(async () => await server.close())
  const state = { mode: 'up' as Outage }
  const answer = async (req: RecordedRequest): Promise<FakeResponse> => {
    if (state.mode === '503') return { status: 503, body: { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'down' } }
    if (state.mode === '429') return { status: 429, headers: { 'retry-after': '1' }, body: { error_code: 'REQUEST_LIMIT_EXCEEDED', message: 'slow down' } }
    if (state.mode === 'hang') return await new Promise<FakeResponse>(() => {})
    if (state.mode === 'exports503' && req.method === 'POST') return { status: 503, body: { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'warming up' } }
    return defaultAnswer(req)
  }
  server.route('GET', EXPERIMENT, answer).route('POST', TRACES, answer).route('PUT', '/api/2.0/mlflow-artifacts/artifacts/*', answer)
  return { server, state }
}

function setup (t: Test, url: string, requestTimeoutMs = 10_000, maxBackoffMs = 100, queue: QueueOptions = {}): { tracing: MlflowTracing, logger: ReturnType<typeof recordingLogger> } {
  const logger = recordingLogger()
  const tracing = new MlflowTracing({ logger, requestTimeoutMs, queue: { initialBackoffMs: 20, maxBackoffMs, ...queue } }, { MLFLOW_TRACKING_URI: url, MLFLOW_EXPERIMENT_ID: '1' })
  t.teardown(async () => { await tracing.shutdown(100) })
  return { tracing, logger }
}

function endTrace (tracing: MlflowTracing): string {
  const span = tracing.tracer.startSpan('root')
  span.end()
  return span.trace.id
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

for (const mode of ['503', '429'] as const) {
  t.test(`an outage answered ${mode}: traces stop being sent, one probe at a time, none charged for waiting, all exported after`, async t => {
    const { server, state } = await switchable(t)
    const { tracing } = setup(t, server.url, 10_000, mode === '429' ? 2000 : 100)
    await tracing.start()
    state.mode = mode
    const first = endTrace(tracing)
    // stats() hears from the export thread a few times a second: wait for it, not a fixed time.
    await until(() => tracing.stats().destination.state === 'down', 'the outage to be seen')
    const during = Array.from({ length: 30 }, () => endTrace(tracing))
    await sleep(mode === '429' ? 2500 : 500)
    const posts = server.received('POST', TRACES).length
    t.equal(posts, 1, 'only the trace that found the outage was sent: the others wait')
    const probes = server.received('GET', EXPERIMENT).slice(1) // the first is start()'s lookup
    t.ok(probes.length >= 2, `probed ${probes.length} times`)
    if (mode === '429') t.ok(probes.length <= 3 && probes[1].at - probes[0].at >= 900, 'Retry-After spaces the probes')
    t.match(tracing.stats(), { retried: 1, queued: 31, inFlight: 0 })

    state.mode = 'up'
    t.equal(await tracing.flush(5000), true)
    const stats = tracing.stats()
    t.equal(stats.destination.state, 'up')
    t.equal(stats.exported, 31)
    t.equal(stats.retried, 1, 'no attempt charged to the 30 that waited')
    const sent = new Set(server.received('POST', TRACES).map(r => (JSON.parse(r.body) as { trace: { trace_info: { trace_id: string } } }).trace.trace_info.trace_id))
    t.ok([first, ...during].every(id => sent.has(id)))
  })
}

t.test('a server that hangs: one probe outstanding at a time, each ended by the request timeout', async t => {
  const { server, state } = await switchable(t)
  const { tracing } = setup(t, server.url, 150)
  await tracing.start()
  state.mode = 'hang'
  for (let i = 0; i < 5; i++) endTrace(tracing)
  await sleep(900)
  const probes = server.received('GET', EXPERIMENT).slice(1)
  t.ok(probes.length >= 2, `probed ${probes.length} times`)
  for (let i = 1; i < probes.length; i++) t.ok(probes[i].at - probes[i - 1].at >= 140, 'the next probe only after the last timed out')
  t.equal(server.received('POST', TRACES).length, 5, 'the five in flight when it hung, no more')
  t.match(tracing.stats(), { retried: 5, queued: 5, destination: { state: 'down' } })
  state.mode = 'up'
  t.equal(await tracing.flush(5000), true)
  t.match(tracing.stats(), { exported: 5, retried: 5, dropped: { retries_exhausted: 0 } })
})

t.test('a server that answers probes but fails exports for a while: no trace failing with the others runs out of attempts, and the probes back off', async t => {
  const { server, state } = await switchable(t)
  const { tracing } = setup(t, server.url, 10_000, 100, { maxAttempts: 2 })
  await tracing.start()
  state.mode = 'exports503'
  for (let i = 0; i < 10; i++) endTrace(tracing)
  await sleep(800)
  const posts = server.received('POST', TRACES).length
  t.ok(posts <= 200, `${posts} export calls in 800 ms: each relapse waits longer before the next probe`)
  state.mode = 'up'
  t.equal(await tracing.flush(5000), true)
  t.match(tracing.stats(), { exported: 10, dropped: { retries_exhausted: 0 } })
})

t.test('the server restarted on the same port: refused, then answered', async t => {
  const { server } = await switchable(t)
  const { tracing, logger } = setup(t, server.url)
  await tracing.start()
  const port = server.port
  await server.close()
  for (let i = 0; i < 10; i++) endTrace(tracing)
  await sleep(300)
  t.match(tracing.stats(), { destination: { state: 'down' }, exported: 0, queued: 10 })
  const downSince = Date.parse(tracing.stats().destination.since)
  const back = await FakeServer.start(port)
  t.teardown(async () => await back.close())
  t.equal(await tracing.flush(5000), true)
  const stats = tracing.stats()
  t.match(stats, { exported: 10, destination: { state: 'up' } })
  t.ok(Date.parse(stats.destination.since) > downSince)
  t.ok(logger.calls.info.some(c => /answers again/.test(c.msg ?? '')), 'the recovery is logged')
})

t.test('adaptive concurrency', async t => {
  t.test('grows while latency holds, up to the maximum', async t => {
    const c = new AdaptiveConcurrency(8, 100)
    t.equal(c.limit, 8)
    for (let i = 0; i < 500; i++) c.succeeded(50, 1)
    t.equal(c.limit, 100)
  })
  t.test('does not grow without a backlog; usual latency never shrinks it', async t => {
    const c = new AdaptiveConcurrency(8, 512)
    for (let i = 0; i < 100; i++) c.succeeded(50, 0)
    t.equal(c.limit, 8)
    for (let i = 0; i < 200; i++) c.succeeded(40 + (i % 3) * 20, 1) // 40-80 ms: noise around a 50 ms destination
    t.equal(c.limit, 208)
  })
  t.test('never grows past twice what the demand needs: arrivals per ms × mean latency', async t => {
    const c = new AdaptiveConcurrency(8, 512)
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 50; i++) c.arrived() // 50 in a 260 ms window: ≈ 0.2 per ms
      for (let i = 0; i < 300; i++) c.succeeded(10, 1) // with a backlog, at the usual 10 ms
      await sleep(260)
    }
    c.succeeded(10, 1)
    t.ok(c.limit <= 8 + Math.ceil(2 * (50 / 260 + 1 / 1000) * 10), `limit ${c.limit}: enough for the demand, not the 300 its successes alone would give`)
  })
  t.test('backs off on overload and on latency growth, never below the floor', async t => {
    const c = new AdaptiveConcurrency(8, 512)
    for (let i = 0; i < 300; i++) c.succeeded(50, 1)
    const high = c.limit
    c.overloaded()
    t.equal(c.limit, Math.floor(high / 2))
    c.overloaded()
    t.equal(c.limit, Math.floor(high / 2), 'one decrease per round trip: exports failing together count once')
    await sleep(120)
    c.succeeded(500, 1)
    t.ok(c.limit < Math.floor(high / 2), 'a latency ten times the baseline decreases it')
    for (let i = 0; i < 40; i++) {
      await sleep(101)
      c.overloaded()
    }
    t.equal(c.limit, 8, 'the floor holds')
  })
})
