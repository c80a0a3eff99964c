// A long outage with the durable spool on: the real MLflow server is stopped under a steady load
// and started again on the same port and data after BENCH_SPOOL_OUTAGE_SEC. Measured: the app's
// RSS during the outage (the spool keeps the traces on disk, not in memory), and how fast the
// spool is replayed into the server once it is back, until every trace is stored.
import autocannon from 'autocannon'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { everySecond, mlflowUri, serverStats, startMlflow, startServer, stopChild, stopMlflow, type ServerStats } from './children'
import { mib, r1 } from './report'
import { SPOOL_OUTAGE_SEC, SPOOL_RATE } from './settings'

interface SpoolStats { pending: number, spooled: number, replayed: number, refused: number, dropped: { evicted: number, torn: number } }

interface Sample { t: number, rssMiB: number, heapUsedMiB: number, queued: number, spoolPending: number }

function sample (t0: number, s: ServerStats): Sample {
  const q = s.tracing as NonNullable<ServerStats['tracing']>
  return { t: r1((performance.now() - t0) / 1000), rssMiB: mib(s.memory.rss), heapUsedMiB: mib(s.memory.heapUsed), queued: q.queued, spoolPending: spoolOf(s).pending }
}

function spoolOf (s: ServerStats): SpoolStats {
  return s.tracing?.spool as SpoolStats
}

/** Traces stored in the experiment, counted page by page through the search API. */
async function storedCount (uri: string, experimentName: string): Promise<number> {
  const got = await (await fetch(`${uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=${encodeURIComponent(experimentName)}`)).json() as { experiment: { experiment_id: string } }
  let count = 0
  let token: string | undefined
  do {
    const res = await fetch(`${uri}/api/3.0/mlflow/traces/search`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ locations: [{ type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: got.experiment.experiment_id } }], max_results: 500, page_token: token })
    })
    const page = await res.json() as { traces?: unknown[], next_page_token?: string }
    count += page.traces?.length ?? 0
    token = page.next_page_token === '' ? undefined : page.next_page_token
  } while (token !== undefined)
  return count
}

export async function spoolOutage (): Promise<Record<string, unknown>> {
  const data = mkdtempSync(join(tmpdir(), 'bench-spool-mlflow-'))
  const spoolDir = mkdtempSync(join(tmpdir(), 'bench-spool-'))
  const experimentName = `bench-spool-${Date.now()}`
  try {
    await startMlflow({ dir: data })
    const uri = mlflowUri()
    const port = Number(new URL(uri).port)
    const server = await startServer('spool', { BENCH_MLFLOW_URI: uri, BENCH_EXPERIMENT_NAME: experimentName, BENCH_SPOOL_DIR: spoolDir })
    try {
      // One trace before the outage: the experiment exists and the span path is negotiated.
      await fetch(`${server.url}/`)
      await sleep(2000)
      const t0 = performance.now()
      const baseline = sample(t0, await serverStats(server.url))
      await stopMlflow()
      const samples: Sample[] = []
      const stopSampling = everySecond(async () => { samples.push(sample(t0, await serverStats(server.url))) })
      const load = await autocannon({ url: `${server.url}/`, connections: 20, pipelining: 1, overallRate: SPOOL_RATE, duration: SPOOL_OUTAGE_SEC })
      await stopSampling()
      const down = await serverStats(server.url)
      const spooled = spoolOf(down)
      await startMlflow({ dir: data, port })
      const back = performance.now()
      const replaySamples: Sample[] = []
      let s = down
      while (spoolOf(s).pending > 0 || (s.tracing?.queued ?? 0) > 0 || (s.tracing?.inFlight ?? 0) > 0) {
        if (performance.now() - back > 30 * 60_000) throw new Error(`replay not done after 30 min: ${JSON.stringify(s.tracing)}`)
        await sleep(1000)
        s = await serverStats(server.url)
        replaySamples.push(sample(t0, s))
      }
      const replaySec = (performance.now() - back) / 1000
      const replayed = spoolOf(s).replayed
      const stored = await storedCount(uri, experimentName)
      const rss = samples.map(x => x.rssMiB)
      const half = samples.filter(x => x.t >= samples[samples.length - 1].t / 2)
      return {
        outageSec: SPOOL_OUTAGE_SEC,
        rate: SPOOL_RATE,
        requests: load.requests.total,
        achievedReqPerSec: r1(load.requests.average),
        errors: load.errors,
        non2xx: load.non2xx,
        p50Ms: load.latency.p50,
        p99Ms: load.latency.p99,
        rssMiB: { baseline: baseline.rssMiB, max: Math.max(...rss), final: rss[rss.length - 1], secondHalfGrowth: r1(half[half.length - 1].rssMiB - half[0].rssMiB) },
        maxQueued: Math.max(...samples.map(x => x.queued)),
        spoolAtEndOfOutage: spooled,
        replay: { seconds: r1(replaySec), replayed, tracesPerSec: r1(replayed / replaySec), maxRssMiB: Math.max(...replaySamples.map(x => x.rssMiB)) },
        final: { exported: s.tracing?.exported, dropped: s.tracing?.dropped, spool: spoolOf(s) },
        storedInMlflow: stored,
        samples: samples.filter((_, i) => i % 10 === 0)
      }
    } finally {
      await stopChild(server.child)
    }
  } finally {
    await stopMlflow()
    rmSync(data, { recursive: true, force: true })
    rmSync(spoolDir, { recursive: true, force: true })
  }
}

export function printSpoolOutage (o: Record<string, any>): void {
  console.log(`  ${o.requests} requests at ${o.achievedReqPerSec} req/s, ${o.errors} errors, ${o.non2xx} non-2xx; p50 ${o.p50Ms} ms, p99 ${o.p99Ms} ms`)
  console.log(`  RSS MiB: baseline ${o.rssMiB.baseline}, max ${o.rssMiB.max}, final ${o.rssMiB.final}, second half ${o.rssMiB.secondHalfGrowth >= 0 ? '+' : ''}${o.rssMiB.secondHalfGrowth}; queued at most ${o.maxQueued}`)
  console.log(`  spool at the end of the outage: ${JSON.stringify(o.spoolAtEndOfOutage)}`)
  console.log(`  replay: ${o.replay.replayed} traces in ${o.replay.seconds} s = ${o.replay.tracesPerSec} traces/s (RSS at most ${o.replay.maxRssMiB} MiB); ${o.storedInMlflow} traces stored in MLflow`)
}
