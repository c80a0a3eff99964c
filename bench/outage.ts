// Memory during a tracking-server outage: a server whose tracking URI is a closed port, under a
// steady load, sampled every second; and the same load on traced-sink, for the reference latency.
import autocannon from 'autocannon'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { everySecond, serverStats, startServer, stopChild, type ServerStats } from './children'
import { cpuWindow } from './cpu'
import { mib, r1 } from './report'
import { QUEUE_DEFAULTS } from '../plugin/export/queue'
import { OUTAGE_RATE, OUTAGE_SEC } from './settings'

async function closedPort (): Promise<number> {
  return await new Promise((resolvePort, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolvePort(port))
    })
  })
}

interface Sample { t: number, rss: number, heapUsed: number, queued: number, queuedBytes: number, inFlight: number, exported: number, retried: number, dropped: Record<string, number> }

function sample (t0: number, s: ServerStats): Sample {
  const q = s.tracing as NonNullable<ServerStats['tracing']>
  return {
    t: r1((performance.now() - t0) / 1000), rss: s.memory.rss, heapUsed: s.memory.heapUsed,
    queued: q.queued, queuedBytes: q.queuedBytes, inFlight: q.inFlight, exported: q.exported, retried: q.retried, dropped: q.dropped
  }
}

/** The same fixed-rate load on traced-sink (tracing on, nothing failing): the outage's reference latency. */
export async function outageControl (seconds: number): Promise<Record<string, unknown>> {
  const server = await startServer('traced-sink')
  try {
    await sleep(1000)
    const before = await serverStats(server.url)
    const r = await autocannon({ url: `${server.url}/`, connections: 100, pipelining: 1, overallRate: OUTAGE_RATE, duration: seconds })
    const after = await serverStats(server.url)
    return {
      variant: 'traced-sink', seconds, achievedReqPerSec: r1(r.requests.average), p50Ms: r.latency.p50, p99Ms: r.latency.p99, errors: r.errors,
      rssMiB: { before: mib(before.memory.rss), after: mib(after.memory.rss) }, heapUsedMiB: { before: mib(before.memory.heapUsed), after: mib(after.memory.heapUsed) }
    }
  } finally {
    await stopChild(server.child)
  }
}

export async function outage (): Promise<Record<string, unknown>> {
  const deadUri = `http://127.0.0.1:${await closedPort()}`
  const server = await startServer('outage', { BENCH_MLFLOW_URI: deadUri })
  try {
    const t0 = performance.now()
    const baselineSamples: Sample[] = []
    for (let i = 0; i < 3; i++) {
      await sleep(1000)
      baselineSamples.push(sample(t0, await serverStats(server.url)))
    }
    const baseline = baselineSamples[baselineSamples.length - 1]
    const samples: Sample[] = []
    const stopSampling = everySecond(async () => { samples.push(sample(t0, await serverStats(server.url))) })
    const window = cpuWindow(server.child.pid)
    const r = await autocannon({ url: `${server.url}/`, connections: 100, pipelining: 1, overallRate: OUTAGE_RATE, duration: OUTAGE_SEC })
    const cpu = window()
    await stopSampling()
    const final = sample(t0, await serverStats(server.url))
    samples.push(final)
    const maxRss = Math.max(...samples.map(s => s.rss))
    const maxHeap = Math.max(...samples.map(s => s.heapUsed))
    const maxQueued = Math.max(...samples.map(s => s.queued))
    const maxQueuedBytes = Math.max(...samples.map(s => s.queuedBytes))
    // Growth over the second half of the load: a bounded queue should be flat there.
    const half = samples.filter(s => s.t >= final.t / 2 + baseline.t / 2)
    const secondHalfRssGrowth = half.length > 1 ? half[half.length - 1].rss - half[0].rss : 0
    const secondHalfHeapGrowth = half.length > 1 ? half[half.length - 1].heapUsed - half[0].heapUsed : 0
    return {
      deadUri,
      seconds: OUTAGE_SEC,
      rate: OUTAGE_RATE,
      achievedReqPerSec: r1(r.requests.average),
      requests: r.requests.total,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      errors: r.errors,
      non2xx: r.non2xx,
      cpu,
      bound: { maxTraces: QUEUE_DEFAULTS.maxTraces, maxBytes: QUEUE_DEFAULTS.maxBytes },
      memoryMiB: {
        baseline: { rss: mib(baseline.rss), heapUsed: mib(baseline.heapUsed) },
        max: { rss: mib(maxRss), heapUsed: mib(maxHeap) },
        final: { rss: mib(final.rss), heapUsed: mib(final.heapUsed) },
        growth: { rss: mib(final.rss - baseline.rss), heapUsed: mib(final.heapUsed - baseline.heapUsed) },
        maxGrowth: { rss: mib(maxRss - baseline.rss), heapUsed: mib(maxHeap - baseline.heapUsed) },
        secondHalfGrowth: { rss: mib(secondHalfRssGrowth), heapUsed: mib(secondHalfHeapGrowth) }
      },
      queue: {
        maxQueued, maxQueuedMiB: mib(maxQueuedBytes),
        final: { queued: final.queued, queuedBytes: final.queuedBytes, inFlight: final.inFlight, exported: final.exported, retried: final.retried, dropped: final.dropped }
      },
      samples: samples.map(s => ({ t: s.t, rssMiB: mib(s.rss), heapUsedMiB: mib(s.heapUsed), queued: s.queued, queuedMiB: mib(s.queuedBytes), retried: s.retried, dropped: s.dropped.queue_full + s.dropped.retries_exhausted }))
    }
  } finally {
    await stopChild(server.child)
  }
}
