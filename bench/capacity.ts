// Capacity: one app process under a steady load (steady-load.ts), exporting into a stand-in
// tracking server that answers each call after 0 ms or 50 ms (capacity-backend.ts), against the
// untraced app at the same rate, in alternating rounds. Reports traces exported and dropped, request
// latency traced vs untraced, the app's CPU per exported trace, and per rate and backend whether the
// issue's criteria held over the rounds.
import { setTimeout as sleep } from 'node:timers/promises'
import { serverStats, startListening, startServer, stopChild, type RunningServer, type ServerStats } from './children'
import { cpuWindow, waitForQuiet, type CpuWindow } from './cpu'
import { mib, r1 } from './report'
import { CAPACITY_DELAYS, CAPACITY_RATES, CAPACITY_ROUNDS, CAPACITY_SEC, WARMUP } from './settings'
import { steadyLoad } from './steady-load'

export interface CapacityRow {
  /** 1-based: untraced and traced runs alternate round by round. */
  round: number
  /** null: the untraced app. */
  backendDelayMs: number | null
  rate: number
  achievedReqPerSec: number
  answered2xx: number
  /** Requests the app answered on `/` during the load: traces, where tracing is on. */
  served: number
  errors: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** The app's event loop during the load: how late a 1-ms timer ran (ms). */
  loopDelay?: ServerStats['loopDelay']
  /** Its collector's pauses during the load. */
  gc?: ServerStats['gc']
  /** The app's CPU per request, over the load and the drain after it. */
  appCpuUsPerReq?: number
  cpu?: CpuWindow
  exported?: number
  dropped?: Record<string, number>
  /** After the load: how long until nothing was queued or in flight. */
  drainSec?: number
  concurrencyAtEnd?: number
  backend?: { startTrace: number, otlpRequests: number, cpuPct: number }
  rssMiBAtEnd: number
  /** (traced − untraced app CPU per request) × requests / traces exported. */
  cpuUsPerExportedTrace?: number
  /** p99 traced / p99 of the untraced run of the same round and rate. */
  p99Ratio?: number
}

/** The capacity criteria for one rate and backend, over every round. */
export interface CapacityVerdict {
  rate: number
  backendDelayMs: number
  rounds: number
  /** Every round reached the rate (within 1 %) and exported every trace it served. */
  allExported: boolean
  dropped: number
  /** The median of the rounds' p99 ratios: one run's untraced p99 is too noisy to judge by alone. */
  medianP99Ratio: number
  held: boolean
}

/** The most a traced p99 may exceed the untraced app's (the 20 %). */
const P99_RATIO_TARGET = 1.2

interface BackendCount { startTrace: number, otlpRequests: number, otlpBytes: number, cpuUs: { user: number, system: number } }

async function backendCount (url: string): Promise<BackendCount> {
  const res = await fetch(`${url}/__count`, { signal: AbortSignal.timeout(10_000) })
  return await res.json() as BackendCount
}

function tracing (s: ServerStats): NonNullable<ServerStats['tracing']> {
  return s.tracing as NonNullable<ServerStats['tracing']>
}

/** Waits until the app has nothing queued or in flight (at most `maxSec`); returns the seconds waited. */
async function drain (url: string, maxSec: number): Promise<number> {
  const started = performance.now()
  for (;;) {
    const q = tracing(await serverStats(url))
    const waited = (performance.now() - started) / 1000
    if ((q.queued === 0 && q.inFlight === 0) || waited >= maxSec) return r1(waited)
    await sleep(100)
  }
}

async function runOne (round: number, rate: number, backend: { delayMs: number, server: RunningServer } | undefined): Promise<CapacityRow> {
  await waitForQuiet(30)
  const app = await startServer(backend === undefined ? 'bare' : 'capacity', backend === undefined ? {} : { BENCH_MLFLOW_URI: backend.server.url })
  try {
    await steadyLoad(`${app.url}/`, rate, WARMUP)
    if (backend !== undefined) await drain(app.url, 15)
    const before = await serverStats(app.url)
    const b0 = backend === undefined ? undefined : await backendCount(backend.server.url)
    const window = cpuWindow(app.child.pid)
    const t0 = performance.now()
    const r = await steadyLoad(`${app.url}/`, rate, CAPACITY_SEC)
    const { loopDelay, gc } = await serverStats(app.url)
    const drainSec = backend === undefined ? 0 : await drain(app.url, 30)
    const cpu = window()
    const seconds = (performance.now() - t0) / 1000
    const after = await serverStats(app.url)
    const row: CapacityRow = {
      round,
      backendDelayMs: backend?.delayMs ?? null,
      rate,
      achievedReqPerSec: r.achievedReqPerSec,
      answered2xx: r.answered2xx,
      served: after.served - before.served,
      errors: r.errors,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      maxMs: r.maxMs,
      loopDelay,
      gc,
      cpu,
      rssMiBAtEnd: mib(after.memory.rss)
    }
    if (cpu !== undefined && row.served > 0) row.appCpuUsPerReq = r1(cpu.serverPct / 100 * seconds * 1e6 / row.served)
    if (backend !== undefined && b0 !== undefined) {
      const q0 = tracing(before)
      const q1 = tracing(after)
      const dropped: Record<string, number> = {}
      for (const k of Object.keys(q1.dropped)) dropped[k] = q1.dropped[k] - (q0.dropped[k] ?? 0)
      const b1 = await backendCount(backend.server.url)
      const backendCpu = (b1.cpuUs.user + b1.cpuUs.system - b0.cpuUs.user - b0.cpuUs.system) / 1e6
      Object.assign(row, {
        exported: q1.exported - q0.exported,
        dropped,
        drainSec,
        concurrencyAtEnd: q1.concurrency as number,
        backend: { startTrace: b1.startTrace - b0.startTrace, otlpRequests: b1.otlpRequests - b0.otlpRequests, cpuPct: r1(backendCpu / seconds * 100) }
      })
    }
    return row
  } finally {
    await stopChild(app.child)
  }
}

export async function capacity (onRow: (row: CapacityRow) => void): Promise<CapacityRow[]> {
  const backends: Array<{ delayMs: number, server: RunningServer }> = []
  try {
    for (const delayMs of CAPACITY_DELAYS) backends.push({ delayMs, server: await startListening('capacity-backend.js', [String(delayMs)], {}, `capacity backend (${delayMs} ms)`) })
    const rows: CapacityRow[] = []
    for (let round = 1; round <= CAPACITY_ROUNDS; round++) {
      for (const rate of CAPACITY_RATES) {
        const untraced = await runOne(round, rate, undefined)
        onRow(untraced)
        rows.push(untraced)
        for (const backend of backends) {
          const row = await runOne(round, rate, backend)
          if (row.appCpuUsPerReq !== undefined && untraced.appCpuUsPerReq !== undefined && row.exported !== undefined && row.exported > 0) {
            row.cpuUsPerExportedTrace = r1((row.appCpuUsPerReq - untraced.appCpuUsPerReq) * row.served / row.exported)
          }
          row.p99Ratio = Math.round(row.p99Ms / Math.max(0.1, untraced.p99Ms) * 100) / 100
          onRow(row)
          rows.push(row)
        }
      }
    }
    return rows
  } finally {
    for (const b of backends) await stopChild(b.server.child)
  }
}

export function capacityVerdicts (rows: CapacityRow[]): CapacityVerdict[] {
  const verdicts: CapacityVerdict[] = []
  for (const rate of CAPACITY_RATES) {
    for (const backendDelayMs of CAPACITY_DELAYS) {
      const runs = rows.filter(r => r.rate === rate && r.backendDelayMs === backendDelayMs)
      if (runs.length === 0) continue
      const ratios = runs.map(r => r.p99Ratio ?? Infinity).sort((a, b) => a - b)
      const medianP99Ratio = ratios.length % 2 === 1 ? ratios[(ratios.length - 1) / 2] : (ratios[ratios.length / 2 - 1] + ratios[ratios.length / 2]) / 2
      const allExported = runs.every(r => r.achievedReqPerSec >= rate * 0.99 && r.exported === r.served && r.errors === 0)
      const dropped = runs.reduce((n, r) => n + Object.values(r.dropped ?? {}).reduce((a, b) => a + b, 0), 0)
      verdicts.push({ rate, backendDelayMs, rounds: runs.length, allExported, dropped, medianP99Ratio, held: allExported && dropped === 0 && medianP99Ratio <= P99_RATIO_TARGET })
    }
  }
  return verdicts
}

export function printCapacityVerdicts (verdicts: CapacityVerdict[]): void {
  for (const v of verdicts) {
    console.log(`  ${v.held ? 'held' : 'NOT held'}: ${v.rate} req/s into ${v.backendDelayMs} ms over ${v.rounds} rounds: ` +
      `${v.allExported ? 'rate reached and every trace exported' : 'rate not reached or traces not exported'}, dropped ${v.dropped}, ` +
      `median p99 × untraced ${v.medianP99Ratio} (target ≤ ${P99_RATIO_TARGET})`)
  }
}

export function printCapacityRow (r: CapacityRow): void {
  const what = r.backendDelayMs === null ? 'untraced' : `traced, backend ${r.backendDelayMs} ms`
  const exp = r.exported === undefined
    ? ''
    : `, exported ${r.exported} of ${r.served}, dropped ${JSON.stringify(Object.fromEntries(Object.entries(r.dropped ?? {}).filter(([, n]) => n > 0)))}, ` +
      `drained in ${r.drainSec ?? '?'} s, concurrency ${r.concurrencyAtEnd ?? '?'}, CPU/exported trace ${r.cpuUsPerExportedTrace ?? '?'} µs, p99 × untraced ${r.p99Ratio ?? '?'}, ` +
      `backend ${r.backend?.startTrace ?? '?'} StartTraceV3 / ${r.backend?.otlpRequests ?? '?'} OTLP, ${r.backend?.cpuPct ?? '?'}% cpu`
  console.log(`  round ${r.round}, ${r.rate} req/s ${what}: achieved ${r.achievedReqPerSec}, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, max ${r.maxMs} ms, loop delay p99 ${r.loopDelay?.p99 ?? '?'} / max ${r.loopDelay?.max ?? '?'} ms, ` +
    `GC ${r.gc?.scavenges ?? '?'} scavenges ${r.gc?.scavengeMs ?? '?'} ms / ${r.gc?.major ?? '?'} major ${r.gc?.majorMs ?? '?'} ms, errors ${r.errors}, ` +
    `app ${r.appCpuUsPerReq ?? '?'} µs/req (cpu ${r.cpu?.serverPct ?? '?'}%, main thread ${r.cpu?.serverMainPct ?? '?'}%; load generator ${r.cpu?.loadgenPct ?? '?'}%, ` +
    `softirq ${r.cpu?.softirqPct ?? '?'}%, other ${r.cpu?.otherPct ?? '?'}% with the backend)${exp}`)
}
