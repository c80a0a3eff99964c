// The export queue's use of the overflow (the durable spool's seam), against an in-memory
// TraceOverflow and a sink that is switched down and up: what goes there, for which reason, and
// what comes back.
import t from 'tap'
import { MlflowHttpError } from '../plugin/export/http'
import { ExportQueue, type QueueOptions } from '../plugin/export/queue'
import type { SerializedTrace } from '../plugin/trace/serialize'
import { MlflowTracer } from '../plugin/trace/tracer'
import { recordingLogger } from './helpers/fake-server'
import { MemoryOverflow } from './helpers/memory-overflow'

const FAST: QueueOptions = { initialBackoffMs: 10, maxBackoffMs: 50 }

/** A destination that is up or down as the test says; down answers 503 to exports and probes alike. */
function switchableSink (): { down: boolean, exported: string[], reject: Set<string>, export: (trace: SerializedTrace) => Promise<void>, probe: () => Promise<void> } {
  const sink = {
    down: false,
    exported: [] as string[],
    reject: new Set<string>(),
    async export (trace: SerializedTrace): Promise<void> {
      await new Promise(resolve => setImmediate(resolve))
      if (sink.down) throw new MlflowHttpError('HTTP 503', 503, 'TEMPORARILY_UNAVAILABLE')
      if (sink.reject.has(trace.traceId)) throw new MlflowHttpError('HTTP 400', 400, 'INVALID_PARAMETER_VALUE')
      sink.exported.push(trace.traceId)
    },
    async probe (): Promise<void> {
      if (sink.down) throw new MlflowHttpError('HTTP 503', 503, 'TEMPORARILY_UNAVAILABLE')
    }
  }
  return sink
}

function setup (opts: QueueOptions = {}): { queue: ExportQueue, sink: ReturnType<typeof switchableSink>, overflow: MemoryOverflow, end: () => string } {
  const sink = switchableSink()
  const overflow = new MemoryOverflow()
  const queue = new ExportQueue(sink, recordingLogger(), { ...FAST, ...opts }, overflow)
  const tracer = new MlflowTracer(trace => queue.push(trace))
  const end = (): string => {
    const span = tracer.startSpan('root')
    span.end()
    return span.trace.id
  }
  return { queue, sink, overflow, end }
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** flush() counts a spooled trace as handled: wait for the probe to find the destination up first. */
async function drained (queue: ExportQueue): Promise<boolean> {
  while (queue.stats().destination.state === 'down') await sleep(10)
  return await queue.flush(5000)
}

t.test('destination down: traces go to the overflow; once it answers they come back and are exported, each settled', async t => {
  const { queue, sink, overflow, end } = setup()
  sink.down = true
  const inFlight = [end(), end()]
  await sleep(100)
  t.equal(queue.stats().destination.state, 'down')
  t.same(overflow.reasons(), { destination_down: 2 }, 'the traces in flight when it went down are spilled once a probe fails')
  const later = Array.from({ length: 20 }, () => end())
  t.same(overflow.reasons(), { destination_down: 22 }, 'traces ended while it is down go straight to the overflow')
  t.equal(queue.stats().queued, 0, 'nothing waits in memory')
  t.equal(queue.stats().retried, 2, 'only the two in flight were charged an attempt')

  t.equal(await queue.flush(10), true, 'flush counts spooled traces as handled')
  sink.down = false
  t.equal(await drained(queue), true)
  t.same(sink.exported.sort(), [...inFlight, ...later].sort(), 'every trace exported once')
  t.same(overflow.settledIds.sort(), [...inFlight, ...later].sort(), 'each settled')
  t.equal(overflow.pending(), 0)
  const stats = queue.stats()
  t.equal(stats.destination.state, 'up')
  t.match(stats, { exported: 22, overflowed: { destination_down: 22, queue_full: 0, shutdown: 0 } })
  t.same(Object.values(stats.dropped).reduce((a, b) => a + b), 0)
  await queue.shutdown(100)
  t.equal(overflow.closed, true, 'shutdown closes the overflow')
})

t.test('past the memory bound the oldest go to the overflow, not dropped, and are exported later', async t => {
  const { queue, sink, overflow, end } = setup({ maxTraces: 5, concurrency: 1 })
  const ids = Array.from({ length: 50 }, () => end())
  t.equal(overflow.reasons().queue_full, 50 - 5 - 1)
  t.equal(queue.stats().dropped.queue_full, 0)
  t.equal(await queue.flush(5000), true)
  t.same(sink.exported.sort(), [...ids].sort())
  t.equal(overflow.pending(), 0)
  await queue.shutdown(100)
})

t.test('an overflow that refuses: queue_full is a counted drop; destination_down keeps the trace in memory', async t => {
  const { queue, sink, overflow, end } = setup({ maxTraces: 5 })
  overflow.accepting = false
  sink.down = true
  end()
  await sleep(100)
  for (let i = 0; i < 10; i++) end()
  let stats = queue.stats()
  t.equal(stats.queued, 6, 'the one retried and the five newest wait in memory')
  t.equal(stats.dropped.queue_full, 5, 'a refused put counts as the drop it would have been')
  sink.down = false
  t.equal(await queue.flush(5000), true)
  stats = queue.stats()
  t.equal(stats.exported, 6)
  t.same(overflow.puts, [])
  await queue.shutdown(100)
})

t.test('at the shutdown deadline what is left goes to the overflow; what was taken from it and not exported stays there', async t => {
  const { queue, sink, overflow, end } = setup()
  sink.down = true
  end()
  await sleep(100)
  for (let i = 0; i < 3; i++) end()
  t.same(overflow.reasons(), { destination_down: 4 })
  // A destination that hangs: exports never settle until aborted.
  sink.down = false
  sink.export = async (_trace, signal?: AbortSignal) => await new Promise((_resolve, reject) => {
    signal?.addEventListener('abort', () => reject(new MlflowHttpError('aborted', 0, 'ABORTED')))
  })
  await sleep(100)
  t.equal(overflow.claimed.size, 4, 'the four were taken back for export')
  const more = [end(), end()]
  t.equal(await queue.shutdown(200), false, 'the deadline passed')
  t.equal(overflow.claimed.size, 4, 'the taken ones stay claimed, not settled: the next process sends them')
  t.same(overflow.settledIds, [])
  t.same(overflow.puts.filter(p => p.reason === 'shutdown').map(p => p.id).sort(), more.sort(), 'the new ones are spooled as shutdown')
  t.same(Object.values(queue.stats().dropped).reduce((a, b) => a + b), 0, 'nothing dropped')
})

t.test('a taken-back trace rejected for its own reason is settled and counted; the others are exported', async t => {
  const { queue, sink, overflow, end } = setup()
  sink.down = true
  end()
  await sleep(100)
  const bad = end()
  const good = [end(), end()]
  sink.reject.add(bad)
  sink.down = false
  t.equal(await drained(queue), true)
  t.equal(queue.stats().dropped.rejected, 1)
  t.ok(overflow.settledIds.includes(bad), 'the rejected one is settled, so it does not come back')
  t.ok(good.every(id => sink.exported.includes(id)))
  t.equal(overflow.pending(), 0)
  await queue.shutdown(100)
})
