import { ROOT_CONTEXT, trace } from '@opentelemetry/api'
import t, { type Test } from 'tap'
import type { QueueOptions, TraceSink } from '../plugin/export/queue'
import { RawJson } from '../plugin/trace/json'
import { serializeTrace, type SerializedTrace } from '../plugin/trace/serialize'
import type { MlflowSpan } from '../plugin/trace/span'
import { MlflowTracer } from '../plugin/trace/tracer'
import { MlflowTracing, type MlflowTracingOptions } from '../plugin/tracing'
import { until } from './helpers/plugin-app'
import { closedPort, FakeServer, recordingLogger } from './helpers/fake-server'

const TRACES = '/api/3.0/mlflow/traces'
const EXPERIMENT = '/api/2.0/mlflow/experiments/get'
const ARTIFACTS = '/api/2.0/mlflow-artifacts/artifacts/*'
const FAST: QueueOptions = { initialBackoffMs: 10, maxBackoffMs: 200 }
const NO_DROPS = { queue_full: 0, too_large: 0, rejected: 0, retries_exhausted: 0, failed: 0, shutdown: 0, serialization_error: 0 }

async function fakeServer (t: Test): Promise<FakeServer> {
  const server = await FakeServer.start()
  t.teardown(async () => await server.close())
  return server
}

function setup (t: Test, trackingUri: string, opts: MlflowTracingOptions = {}): { tracing: MlflowTracing, logger: ReturnType<typeof recordingLogger> } {
  const logger = recordingLogger()
  const tracing = new MlflowTracing({ logger, ...opts, queue: { ...FAST, ...opts.queue } }, { MLFLOW_TRACKING_URI: trackingUri, MLFLOW_EXPERIMENT_ID: '1' })
  t.teardown(async () => { await tracing.shutdown(100) })
  return { tracing, logger }
}

/** Ends one single-span trace; returns its id. */
function endTrace (tracing: MlflowTracing, name = 'root'): string {
  const span = tracing.tracer.startSpan(name)
  span.end()
  return span.trace.id
}

function postedTraceIds (server: FakeServer): string[] {
  return server.received('POST', TRACES).map(r => (JSON.parse(r.body) as { trace: { trace_info: { trace_id: string } } }).trace.trace_info.trace_id)
}

t.test('503 then 200 on StartTraceV3: retried once, exported once', async t => {
  const server = await fakeServer(t)
  server.fail('POST', TRACES, { status: 503, body: { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'busy' } })
  const { tracing, logger } = setup(t, server.url)
  await tracing.start()
  const id = endTrace(tracing)
  t.equal(await tracing.flush(5000), true)
  const stats = tracing.stats()
  t.equal(stats.exported, 1)
  t.equal(stats.retried, 1)
  t.same(stats.dropped, NO_DROPS)
  t.same(postedTraceIds(server), [id, id], 'StartTraceV3 sent twice: the 503 and the retry')
  t.equal(server.received('PUT', ARTIFACTS).length, 1, 'spans uploaded once')
  t.equal(server.received('PUT', ARTIFACTS)[0].path, `/api/2.0/mlflow-artifacts/artifacts/1/traces/${id}/artifacts/traces.json`)
  t.same(logger.calls.error, [])
  t.same(logger.calls.warn, [])
})

t.test('429 with Retry-After: 1 is honoured', async t => {
  const server = await fakeServer(t)
  server.fail('POST', TRACES, { status: 429, headers: { 'retry-after': '1' }, body: { error_code: 'REQUEST_LIMIT_EXCEEDED', message: 'slow down' } })
  const { tracing } = setup(t, server.url, { queue: { maxBackoffMs: 5000 } })
  await tracing.start()
  endTrace(tracing)
  t.equal(await tracing.flush(5000), true)
  const posts = server.received('POST', TRACES)
  t.equal(posts.length, 2)
  t.ok(posts[1].at - posts[0].at >= 900, `retry waited for Retry-After (${posts[1].at - posts[0].at} ms)`)
  t.equal(tracing.stats().retried, 1)
  t.equal(tracing.stats().exported, 1)
  t.same(tracing.stats().dropped, NO_DROPS)
})

t.test('400 is not retried: counted as rejected, logged once with the server message', async t => {
  const server = await fakeServer(t)
  const bad = { status: 400, body: { error_code: 'INVALID_PARAMETER_VALUE', message: 'bad thing' } }
  server.fail('POST', TRACES, bad, bad)
  const { tracing, logger } = setup(t, server.url)
  await tracing.start()
  endTrace(tracing)
  endTrace(tracing)
  t.equal(await tracing.flush(5000), true)
  const stats = tracing.stats()
  t.equal(stats.dropped.rejected, 2)
  t.equal(stats.retried, 0)
  t.equal(stats.exported, 0)
  t.equal(server.received('POST', TRACES).length, 2, 'one call per trace, no retry')
  t.equal(server.received('PUT', ARTIFACTS).length, 0)
  t.equal(logger.calls.error.length, 1, 'logged once')
  const logged = JSON.stringify(logger.calls.error[0])
  t.match(logged, 'bad thing')
  t.match(logger.calls.error[0].obj, { status: 400, errorCode: 'INVALID_PARAMETER_VALUE' })
})

t.test('a server that never answers: timeouts are retried, then the trace is dropped', async t => {
  const server = await fakeServer(t)
  server.fail('POST', TRACES, 'hang', 'hang', 'hang')
  const { tracing, logger } = setup(t, server.url, { requestTimeoutMs: 200, queue: { maxAttempts: 2 } })
  await tracing.start()
  endTrace(tracing)
  t.equal(await tracing.flush(5000), true, 'flush resolves')
  const stats = tracing.stats()
  t.equal(stats.dropped.retries_exhausted, 1)
  t.equal(stats.retried, 1)
  t.equal(stats.exported, 0)
  t.equal(stats.inFlight, 0)
  t.equal(server.received('POST', TRACES).length, 2)
  const warning = logger.calls.warn.find(c => c.msg === 'MLflow trace dropped: retries_exhausted')
  t.ok(warning, 'the drop is logged')
  t.match(String(warning?.obj.detail), /no answer within 200 ms/)
})

t.test('connection refused: start() only warns; traces wait for the destination, charged one attempt each, nothing throws', async t => {
  const port = await closedPort()
  const { tracing, logger } = setup(t, `http://127.0.0.1:${port}`, { queue: { maxAttempts: 3 } })
  await t.resolves(tracing.start(), 'start() does not throw')
  t.ok(logger.calls.warn.some(c => /not reachable/.test(c.msg ?? '')), 'start() warns')

  const before = Date.now()
  for (let i = 0; i < 3; i++) {
    const span = tracing.tracer.startSpan('root')
    const child = tracing.tracer.startSpan('child', {}, trace.setSpan(ROOT_CONTEXT, span))
    child.end()
    let result: unknown = 'not called'
    t.doesNotThrow(() => { result = span.end() })
    t.equal(result, undefined, 'end() is synchronous')
    const stats = tracing.stats()
    t.equal(stats.queued + stats.inFlight, i + 1, 'the trace is handed to the queue at once')
  }
  // Probes back off from 10 ms to 200 ms: a second is many probes, and no trace may pay for them.
  t.equal(await tracing.flush(1000), false, 'nothing can be exported')
  const stats = tracing.stats()
  t.equal(stats.destination.state, 'down')
  t.ok(Date.parse(stats.destination.since) >= before - 5, 'down since the first refusal')
  t.equal(stats.retried, 3, 'the three traces in flight when it went down were charged once each, no more')
  t.equal(stats.queued, 3)
  t.same(stats.dropped, NO_DROPS)
  const warning = logger.calls.warn.find(c => /destination is down/.test(c.msg ?? ''))
  t.match(String(warning?.obj.err), /ECONNREFUSED/, 'the outage is logged once, with the cause')
  t.equal(logger.calls.warn.filter(c => /destination is down/.test(c.msg ?? '')).length, 1)
})

t.test('connection reset on a reused keep-alive socket, then 200: sent again at once and exported', async t => {
  const server = await fakeServer(t)
  server.fail('POST', TRACES, 'reset')
  const { tracing } = setup(t, server.url)
  await tracing.start()
  const id = endTrace(tracing)
  t.equal(await tracing.flush(5000), true)
  const stats = tracing.stats()
  t.equal(stats.retried, 0, 'the transport resent it on a fresh socket, not the queue')
  t.equal(stats.exported, 1)
  t.same(stats.dropped, NO_DROPS)
  t.same(postedTraceIds(server), [id, id])
  t.equal(server.received('PUT', ARTIFACTS).length, 1)
})

t.test('span upload failure: only the upload is retried, StartTraceV3 is not repeated', async t => {
  const server = await fakeServer(t)
  server.fail('PUT', ARTIFACTS, { status: 503, body: 'Service Unavailable' })
  const { tracing } = setup(t, server.url)
  await tracing.start()
  const id = endTrace(tracing)
  t.equal(await tracing.flush(5000), true)
  const stats = tracing.stats()
  t.equal(stats.exported, 1)
  t.equal(stats.retried, 1)
  t.same(stats.dropped, NO_DROPS)
  t.same(postedTraceIds(server), [id], 'StartTraceV3 sent once')
  const puts = server.received('PUT', ARTIFACTS)
  t.equal(puts.length, 2, 'upload sent twice')
  t.equal(puts[0].body, puts[1].body)
  t.match(JSON.parse(puts[1].body), { spans: [{ name: 'root' }] })
})

/** A sink whose exports all wait until release(). */
function gatedSink (): TraceSink & { exported: SerializedTrace[], started: SerializedTrace[], release: () => void } {
  let open: () => void = () => {}
  const gate = new Promise<void>(resolve => { open = resolve })
  const sink = {
    exported: [] as SerializedTrace[],
    started: [] as SerializedTrace[],
    release: () => open(),
    async export (trace: SerializedTrace): Promise<void> {
      sink.started.push(trace)
      await gate
      sink.exported.push(trace)
    }
  }
  return sink
}

t.test('queue overflow: the oldest waiting traces are dropped, memory stays bounded', async t => {
  t.test('trace count bound', async t => {
    const sink = gatedSink()
    const logger = recordingLogger()
    const tracing = new MlflowTracing({ sink, logger, queue: { ...FAST, maxTraces: 10, concurrency: 1 } }, {})
    const ids: string[] = []
    for (let i = 0; i < 1000; i++) ids.push(endTrace(tracing))
    let stats = tracing.stats()
    t.equal(stats.dropped.queue_full, 1000 - 10 - 1, 'all but the one in flight and ten waiting')
    t.equal(stats.queued, 10)
    t.equal(stats.inFlight, 1)
    t.equal(logger.calls.warn.filter(c => c.msg === 'MLflow trace dropped: queue_full').length, 1, 'warned once, not per trace')

    sink.release()
    t.equal(await tracing.flush(5000), true)
    stats = tracing.stats()
    t.equal(stats.exported, 11)
    t.equal(stats.queued, 0)
    t.equal(stats.queuedBytes, 0)
    t.same(sink.exported.map(s => s.traceId), [ids[0], ...ids.slice(-10)], 'the first (in flight) and the ten newest are exported')
    await tracing.shutdown(100)
  })

  t.test('byte bound and too_large', async t => {
    const sink = gatedSink()
    // What the queue weighs one trace of the shape used below at.
    const probeSpan = new MlflowTracer(() => {}).startSpan('root')
    probeSpan.setAttribute('payload', 'x'.repeat(1000))
    probeSpan.end()
    const size = probeSpan.trace.bytes
    t.ok(size > 1000)

    const maxBytes = Math.floor(size * 3.5)
    const tracing = new MlflowTracing({ sink, logger: recordingLogger(), queue: { ...FAST, maxTraces: 1000, maxBytes, concurrency: 1 } }, {})
    const ids: string[] = []
    for (let i = 0; i < 50; i++) {
      const span = tracing.tracer.startSpan('root')
      span.setAttribute('payload', 'x'.repeat(1000))
      span.end()
      ids.push(span.trace.id)
      const stats = tracing.stats()
      t.ok(stats.queuedBytes <= maxBytes, 'queuedBytes ≤ maxBytes after every push')
      t.ok(stats.queued <= 3)
    }
    let stats = tracing.stats()
    t.equal(stats.queued, 3, 'three traces fit in maxBytes')
    t.equal(stats.dropped.queue_full, 50 - 3 - 1, 'the byte bound dropped the rest')
    t.equal(stats.dropped.too_large, 0)

    const big = tracing.tracer.startSpan('big')
    big.setAttribute('payload', 'x'.repeat(maxBytes))
    big.end()
    stats = tracing.stats()
    t.equal(stats.dropped.too_large, 1, 'a trace bigger than maxBytes is dropped as too_large')
    t.equal(stats.dropped.queue_full, 50 - 3 - 1, 'and does not push others out')
    t.equal(stats.queued, 3)
    t.ok(stats.queuedBytes <= maxBytes)

    sink.release()
    t.equal(await tracing.flush(5000), true)
    t.same(sink.exported.map(s => s.traceId), [ids[0], ...ids.slice(-3)], 'the newest waiting traces survive')
    await tracing.shutdown(100)
  })

  t.test('a trace dropped as queue_full is never serialized; one taken for export is', async t => {
    const sink = gatedSink()
    const logger = recordingLogger()
    const tracing = new MlflowTracing({ sink, logger, queue: { ...FAST, maxTraces: 2, concurrency: 1 } }, {})
    /** Ends a trace whose serialization throws. */
    const endPoisoned = (): string => {
      const span = tracing.tracer.startSpan('poisoned')
      span.trace.metadata.poison = { toString () { throw new Error('cannot serialize this') } } as unknown as string
      span.end()
      return span.trace.id
    }
    const first = endTrace(tracing)
    endPoisoned()
    const rest = [endTrace(tracing), endTrace(tracing)]
    let stats = tracing.stats()
    t.equal(stats.dropped.queue_full, 1, 'the poisoned trace waited and was pushed out')
    t.equal(stats.dropped.serialization_error, 0, 'without being serialized')

    sink.release()
    t.equal(await tracing.flush(5000), true)
    t.same(sink.exported.map(s => s.traceId), [first, ...rest])

    const poisoned = endPoisoned()
    stats = tracing.stats()
    t.equal(stats.dropped.serialization_error, 1, 'taken for export at once, it fails to serialize')
    t.equal(stats.queued + stats.inFlight, 0)
    const warning = logger.calls.warn.find(c => c.msg === 'MLflow trace dropped: serialization_error')
    t.match(warning?.obj, { traceId: poisoned, detail: 'cannot serialize this' })
    await tracing.shutdown(100)
  })

  t.test('the byte bound holds for large values of every kind', async t => {
    const message = (i: number): object => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `message ${i} `.repeat(200) })
    const shapes: Record<string, (span: MlflowSpan) => void> = {
      'long string': span => span.setAttribute('payload', 'x'.repeat(50_000)),
      'chat messages': span => span.setInputs({ messages: Array.from({ length: 20 }, (_, i) => message(i)) }),
      'many small objects': span => span.setOutputs(Array.from({ length: 5000 }, (_, i) => ({ id: i, name: `doc-${i}` }))),
      'captured body (RawJson)': span => span.setInputs(new RawJson(JSON.stringify({ text: 'y'.repeat(50_000) }))),
      'event attributes': span => span.addEvent('big', { detail: 'z'.repeat(50_000) }),
      'many spans': span => {
        const tracer = new MlflowTracer(() => {})
        for (let i = 0; i < 200; i++) tracer.startSpan(`child ${i}`, {}, trace.setSpan(ROOT_CONTEXT, span)).setAttribute('i', i)
      }
    }
    for (const [shape, fill] of Object.entries(shapes)) {
      const probe = new MlflowTracer(() => {}).startSpan('root')
      fill(probe)
      probe.end()
      const serialized = serializeTrace(probe.trace)
      const wire = Buffer.byteLength(serialized.spansJson) + Buffer.byteLength(JSON.stringify(serialized.info))
      t.ok(probe.trace.bytes > wire / 2 && probe.trace.bytes < wire * 2, `${shape}: estimate ${probe.trace.bytes} within 2x of ${wire} bytes serialized`)

      const sink = gatedSink()
      const maxBytes = Math.floor(probe.trace.bytes * 3.5)
      const tracing = new MlflowTracing({ sink, logger: recordingLogger(), queue: { ...FAST, maxBytes, concurrency: 1 } }, {})
      for (let i = 0; i < 20; i++) {
        const span = tracing.tracer.startSpan('root')
        fill(span)
        span.end()
        t.ok(tracing.stats().queuedBytes <= maxBytes, `${shape}: queuedBytes ≤ maxBytes`)
      }
      const stats = tracing.stats()
      t.equal(stats.queued, 3, `${shape}: three traces fit`)
      t.equal(stats.dropped.queue_full, 20 - 3 - 1, `${shape}: the byte bound dropped the rest`)
      sink.release()
      await tracing.shutdown(1000)
    }
  })
})

t.test('a sink that throws instead of rejecting, rejects with undefined, or returns no promise, is still counted', async t => {
  const throwing = new MlflowTracing({ sink: { export: () => { throw new Error('sink broke') } }, logger: recordingLogger() }, {})
  // eslint-disable-next-line prefer-promise-reject-errors
  const rejectingNothing = new MlflowTracing({ sink: { export: async () => await Promise.reject(undefined) }, logger: recordingLogger() }, {})
  const plain = new MlflowTracing({ sink: { export: () => undefined as unknown as Promise<void> }, logger: recordingLogger() }, {})
  for (const tracing of [throwing, rejectingNothing, plain]) {
    t.doesNotThrow(() => endTrace(tracing), 'ending the trace does not throw')
    t.equal(await tracing.flush(1000), true)
  }
  t.match(throwing.stats(), { exported: 0, inFlight: 0, dropped: { failed: 1 } })
  t.match(rejectingNothing.stats(), { exported: 0, inFlight: 0, dropped: { failed: 1 } })
  t.match(plain.stats(), { exported: 1, inFlight: 0, dropped: NO_DROPS })
  for (const tracing of [throwing, rejectingNothing, plain]) await tracing.shutdown(100)
})

t.test('shutdown with a deadline while the server hangs', async t => {
  const server = await fakeServer(t)
  server.fail('POST', TRACES, ...Array<'hang'>(10).fill('hang'))
  const { tracing } = setup(t, server.url, { requestTimeoutMs: 10_000, queue: { concurrency: 2 } })
  await tracing.start()
  for (let i = 0; i < 5; i++) endTrace(tracing)
  await until(() => tracing.stats().inFlight === 2, 'two exports in flight')
  t.equal(tracing.stats().queued, 3)

  t.equal(await tracing.shutdown(300), false, 'shutdown reports the deadline was missed')
  let stats = tracing.stats()
  t.equal(stats.queued, 0)
  t.equal(stats.inFlight, 0, 'nothing in flight once shutdown resolves')
  t.equal(stats.dropped.shutdown, 5, 'waiting and in-flight traces are counted by the time shutdown resolves')

  t.equal(await tracing.flush(1000), true, 'the aborted exports settle promptly')
  stats = tracing.stats()
  t.equal(stats.dropped.shutdown, 5, 'waiting and in-flight traces are counted as dropped by shutdown')
  t.equal(stats.inFlight, 0)
  t.equal(stats.exported, 0)
  t.equal(stats.retried, 0, 'aborted exports are not retried')
  t.equal(stats.dropped.retries_exhausted, 0)

  t.doesNotThrow(() => endTrace(tracing))
  stats = tracing.stats()
  t.equal(stats.dropped.shutdown, 6, 'a trace ended after shutdown is counted too')
  t.equal(stats.queued, 0)
  t.equal(server.received('POST', TRACES).length, 2, 'nothing more was sent')
})

t.test('configuration rejected at start()', async t => {
  t.test('401 on experiment lookup names MLFLOW_TRACKING_TOKEN', async t => {
    const server = await fakeServer(t)
    server.fail('GET', EXPERIMENT, { status: 401, body: { error_code: 'UNAUTHENTICATED', message: 'Invalid token' } })
    const { tracing } = setup(t, server.url, { trackingToken: 'wrong' })
    const err = await tracing.start().then(() => undefined, (e: unknown) => e) as { code?: string, message?: string }
    t.equal(err?.code, 'FST_MLFLOW_SERVER_REJECTED')
    t.match(err?.message, 'MLFLOW_TRACKING_TOKEN')
    t.match(err?.message, 'Invalid token')
    t.equal(server.received('GET', EXPERIMENT)[0].headers.authorization, 'Bearer wrong')
  })

  t.test('404 RESOURCE_DOES_NOT_EXIST on experiment lookup names MLFLOW_EXPERIMENT_ID', async t => {
    const server = await fakeServer(t)
    server.fail('GET', EXPERIMENT, { status: 404, body: { error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'No Experiment with id=1 exists' } })
    const { tracing } = setup(t, server.url)
    const err = await tracing.start().then(() => undefined, (e: unknown) => e) as { code?: string, message?: string }
    t.equal(err?.code, 'FST_MLFLOW_INVALID_OPTION')
    t.match(err?.message, 'MLFLOW_EXPERIMENT_ID')
    t.match(err?.message, 'No Experiment with id=1 exists')
  })
})
