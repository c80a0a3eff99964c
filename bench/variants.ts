// Request overhead: each variant's server under the same autocannon load, in rounds.
import autocannon from 'autocannon'
import { loadavg } from 'node:os'
import { mlflowUri, serverStats, startServer, stopChild, type ServerStats } from './children'
import { cpuWindow, isNoisy, waitForQuiet, type CpuWindow } from './cpu'
import { mib, r1 } from './report'
import type { Variant } from './server'
import { DURATION, LOAD, NOISE_RETRIES, ROUNDS, VARIANTS, WARMUP } from './settings'

export interface VariantRow {
  name: Variant
  reqPerSec: number
  p50Ms: number
  p99Ms: number
  ratioToBare: number | null
  requests: number
  errors: number
  non2xx: number
  timeouts: number
  cpu?: CpuWindow
  loadAvg1Before: number
  waitedForQuietSec: number
  /** Server CPU time per request (µs): less sensitive than req/s to a load generator that is itself near its limit. */
  serverCpuUsPerReq?: number
  /** Noisy measurements of this variant that were repeated. */
  discardedAttempts?: Array<Pick<VariantRow, 'reqPerSec' | 'p50Ms' | 'p99Ms' | 'cpu'>>
  exportStats?: { afterWarmup: ServerStats['tracing'], atEnd: ServerStats['tracing'], duringMeasuredRound: Record<string, unknown> }
  otelSpans?: number
  rssMiBAtEnd: number
}

async function load (url: string, seconds: number): Promise<autocannon.Result> {
  return await autocannon({ url: `${url}/`, ...LOAD, duration: seconds })
}

async function runVariant (variant: Variant): Promise<VariantRow> {
  const waitedForQuietSec = await waitForQuiet(30)
  if (waitedForQuietSec > 0) process.stdout.write(`(waited ${waitedForQuietSec} s for other processes to quieten) `)
  const loadAvg1Before = loadavg()[0]
  const extraEnv: Record<string, string> = {}
  if (variant === 'traced-mlflow') {
    extraEnv.BENCH_MLFLOW_URI = mlflowUri()
    extraEnv.BENCH_EXPERIMENT_NAME = `bench-http-${Date.now()}`
  }
  const server = await startServer(variant, extraEnv)
  try {
    await load(server.url, WARMUP)
    const afterWarmup = await serverStats(server.url)
    const window = cpuWindow(server.child.pid)
    const r = await load(server.url, DURATION)
    const cpu = window()
    const atEnd = await serverStats(server.url)
    const row: VariantRow = {
      name: variant,
      reqPerSec: r.requests.average,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      ratioToBare: null,
      requests: r.requests.total,
      errors: r.errors,
      non2xx: r.non2xx,
      timeouts: r.timeouts,
      cpu,
      loadAvg1Before: Math.round(loadAvg1Before * 100) / 100,
      waitedForQuietSec,
      rssMiBAtEnd: mib(atEnd.memory.rss)
    }
    if (cpu !== undefined && row.reqPerSec > 0) row.serverCpuUsPerReq = r1(cpu.serverPct / 100 * 1e6 / row.reqPerSec)
    if (variant === 'fastify-otel') row.otelSpans = atEnd.otelSpans
    if (variant !== 'bare' && variant !== 'express-bare' && variant !== 'fastify-otel' && atEnd.tracing !== null && afterWarmup.tracing !== null) {
      row.exportStats = { afterWarmup: afterWarmup.tracing, atEnd: atEnd.tracing, duringMeasuredRound: statsDelta(afterWarmup.tracing, atEnd.tracing) }
    }
    return row
  } finally {
    await stopChild(server.child)
  }
}

function statsDelta (a: NonNullable<ServerStats['tracing']>, b: NonNullable<ServerStats['tracing']>): Record<string, unknown> {
  const dropped: Record<string, number> = {}
  for (const k of Object.keys(b.dropped)) dropped[k] = b.dropped[k] - (a.dropped[k] ?? 0)
  return { exported: b.exported - a.exported, retried: b.retried - a.retried, dropped }
}

/** Quiet rounds first (noise only ever slows a server down), then the faster. */
function best (rows: VariantRow[]): VariantRow {
  return [...rows].sort((a, b) => Number(isNoisy(a.cpu)) - Number(isNoisy(b.cpu)) || b.reqPerSec - a.reqPerSec)[0]
}

/** One measured round of `v`, repeated (BENCH_NOISE_RETRIES times) while other processes disturbed it. */
async function measure (v: Variant, round: number): Promise<VariantRow> {
  const attempts: VariantRow[] = []
  for (let attempt = 0; ; attempt++) {
    process.stdout.write(`${ROUNDS > 1 ? `round ${round + 1}/${ROUNDS}, ` : ''}variant ${v}${attempt > 0 ? ' (again: the last round was noisy)' : ''}: ` +
      `${WARMUP} s warm-up + ${DURATION} s … `)
    const r = await runVariant(v)
    console.log(`${r.reqPerSec.toFixed(0)} req/s (cpu: server ${r.cpu?.serverPct ?? '?'}%, load generator ${r.cpu?.loadgenPct ?? '?'}%, ` +
      `MLflow ${r.cpu?.mlflowPct ?? '?'}%, softirq ${r.cpu?.softirqPct ?? '?'}%, steal ${r.cpu?.stealPct ?? '?'}%, other processes ${r.cpu?.otherPct ?? '?'}%)`)
    attempts.unshift(r)
    if (!isNoisy(r.cpu) || attempt >= NOISE_RETRIES) break
  }
  // Keep the better of a noisy attempt and the last one.
  const row = best(attempts)
  const others = attempts.filter(x => x !== row)
  if (others.length > 0) row.discardedAttempts = others.map(x => ({ reqPerSec: x.reqPerSec, p50Ms: x.p50Ms, p99Ms: x.p99Ms, cpu: x.cpu }))
  return row
}

/** Every variant in every round; the rows are each variant's best quiet round, or its best round if none was quiet. */
export async function runVariants (): Promise<{ rows: VariantRow[], rounds: VariantRow[][] }> {
  const rounds: VariantRow[][] = []
  for (let round = 0; round < ROUNDS; round++) {
    // Later rounds alternate the order, so that a slow drift (or a neighbour's test run) does not
    // always hit the same variants.
    const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()
    const rows: VariantRow[] = []
    for (const v of order) rows.push(await measure(v, round))
    rounds.push(rows)
  }
  const rows = VARIANTS.map(v => best(rounds.map(rs => rs.find(r => r.name === v) as VariantRow)))
  // Each variant against the bare server of its own framework: express-traced against express-bare.
  for (const r of rows) {
    const bare = rows.find(b => b.name === (r.name.startsWith('express-') ? 'express-bare' : 'bare'))
    r.ratioToBare = bare === undefined ? null : Math.round(r.reqPerSec / bare.reqPerSec * 1000) / 1000
  }
  return { rows, rounds }
}
