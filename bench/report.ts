// What the run prints, and bench/results.json.
import { readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { isNoisy, NOISY_PCT } from './cpu'
import { DURATION, EXPORT_RATIO_TARGET, EXPORT_TRACES, LOAD, OUTAGE_RATE, repoRoot, ROUNDS, TARGETS, WARMUP } from './settings'
import type { VariantRow } from './variants'

export const mib = (bytes: number): number => Math.round(bytes / 2 ** 20 * 10) / 10
export const r1 = (x: number): number => Math.round(x * 10) / 10
export const r2 = (x: number): number => Math.round(x * 100) / 100

export function nonZero (rec: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(rec).filter(([, v]) => v !== 0))
}

export function fastifyVersion (): string {
  return (JSON.parse(readFileSync(join(repoRoot, 'node_modules', 'fastify', 'package.json'), 'utf8')) as { version: string }).version
}

/** results.json's header: what ran where. */
export function runDescription (mlflowVersion: string | undefined): Record<string, unknown> {
  return {
    node: process.version,
    fastify: fastifyVersion(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', memGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10 },
    date: new Date().toISOString(),
    durationSec: DURATION,
    warmupSec: WARMUP,
    rounds: ROUNDS,
    load: LOAD,
    mlflowServer: mlflowVersion === undefined ? undefined : { version: mlflowVersion, workers: 2 },
    targets: TARGETS
  }
}

/** Parts skipped in this run keep their figures from the last run that measured them. */
export function writeResults (results: Record<string, unknown>, skipped: string[]): void {
  const file = join(repoRoot, 'bench', 'results.json')
  let previous: Record<string, unknown> = {}
  try {
    previous = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
  } catch {}
  const kept: Record<string, unknown> = {}
  for (const k of skipped) if (previous[k] !== undefined) kept[k] = previous[k]
  writeFileSync(file, JSON.stringify({ ...kept, ...results }, null, 2) + '\n')
  console.log(`\nwrote ${file}`)
}

function pad (s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n)
}

export function printVariants (rows: VariantRow[]): void {
  const head = [pad('variant', 14), pad('req/s', 9, true), pad('p50 ms', 7, true), pad('p99 ms', 7, true), pad('× bare', 7, true), pad('target', 7, true),
    pad('srv µs/req', 10, true), pad('srv cpu%', 9, true), pad('loadgen%', 9, true), pad('mlflow%', 8, true), pad('softirq%', 9, true), pad('other%', 7, true), '  notes'].join(' ')
  console.log('\n' + head)
  console.log('-'.repeat(head.length))
  for (const r of rows) {
    const target = TARGETS[r.name]
    const ok = target === undefined || r.ratioToBare === null ? '' : (r.ratioToBare >= target ? ' ok' : ' MISS')
    const notes: string[] = []
    if (r.errors + r.non2xx + r.timeouts > 0) notes.push(`errors ${r.errors}, non2xx ${r.non2xx}, timeouts ${r.timeouts}`)
    if (r.exportStats !== undefined && r.name === 'traced-mlflow') {
      const d = r.exportStats.atEnd as NonNullable<typeof r.exportStats.atEnd>
      notes.push(`exported ${d.exported}, dropped ${JSON.stringify(nonZero(d.dropped))}, queued ${d.queued}`)
    }
    if (r.otelSpans !== undefined) notes.push(`${r.otelSpans} spans`)
    if (r.cpu !== undefined && isNoisy(r.cpu)) {
      const top = r.cpu.otherTop.map(o => `${o.cmd.split(' ').slice(0, 3).join(' ')} ${o.pct}%`).join(', ')
      notes.unshift(`NOISY (${top === '' ? 'short-lived processes' : top})`)
    }
    if (r.cpu !== undefined && r.cpu.stealPct > 5) notes.unshift(`steal ${r.cpu.stealPct}%`)
    console.log([
      pad(r.name, 14), pad(r.reqPerSec.toFixed(0), 9, true), pad(r.p50Ms.toFixed(0), 7, true), pad(r.p99Ms.toFixed(0), 7, true),
      pad(r.ratioToBare === null ? '' : r.ratioToBare.toFixed(3), 7, true), pad(target === undefined ? '' : `≥${target}${ok}`, 7, true),
      pad(r.serverCpuUsPerReq?.toFixed(1) ?? '', 10, true), pad(r.cpu?.serverPct.toFixed(0) ?? '', 9, true), pad(r.cpu?.loadgenPct.toFixed(0) ?? '', 9, true),
      pad(r.cpu?.mlflowPct.toFixed(0) ?? '', 8, true), pad(r.cpu?.softirqPct.toFixed(0) ?? '', 9, true), pad(r.cpu?.otherPct.toFixed(0) ?? '', 7, true),
      '  ' + notes.join('; ')
    ].join(' '))
  }
  console.log(`targets: traced-sink ≥ ${TARGETS['traced-sink']} × bare, traced-mlflow ≥ ${TARGETS['traced-mlflow']} × bare, ` +
    `express-traced ≥ ${TARGETS['express-traced']} × express-bare (express-* against express-bare)` +
    `\nsrv µs/req = the server process's CPU time per request; ` +
    `CPU columns: % of one core during the measured round (2 cores = 200%); softirq = kernel loopback networking; ` +
    `other = processes outside the benchmark (NOISY above ${NOISY_PCT}%)`)
}

export function printExport (exp: Record<string, any>): void {
  for (const [path, p] of Object.entries(exp.byPath as Record<string, Record<string, any>>)) {
    console.log(`  ${path}: pipeline ${p.pipelineTracesPerSec}/s vs sequential ${p.sequentialTracesPerSec}/s = ${p.pipelineOverSequential}×; ` +
      `app ${p.appMsPerTrace.pipeline} / ${p.appMsPerTrace.sequential} ms CPU per trace, MLflow ${p.mlflowMsPerTrace.pipeline} / ${p.mlflowMsPerTrace.sequential} ms ` +
      `(pipeline / sequential); every trace stored with its spans: ${String(p.everyTraceStored)}`)
  }
  for (const [mode, v] of Object.entries(exp.otlpVsArtifact as Record<string, Record<string, number | null>>)) {
    console.log(`  OTLP ÷ artifact, ${mode}: traces/s ${v.tracesPerSec}×, app CPU per trace ${v.appCpuPerTrace}×, MLflow CPU per trace ${v.mlflowCpuPerTrace}×`)
  }
  console.log(`  default path (OTLP): pipeline ÷ sequential = ${exp.ratio}× (target ≥ ${EXPORT_RATIO_TARGET}×: ${exp.meetsTarget === true ? 'ok' : 'MISS'}); ` +
    `nothing lost: ${String(exp.nothingLost)}`)
  if (exp.otherConcurrency !== undefined) {
    for (const [c, v] of Object.entries(exp.otherConcurrency as Record<string, { tracesPerSec: number, ratio: number }>)) {
      console.log(`  concurrency ${c}: ${v.tracesPerSec}/s = ${v.ratio}× sequential`)
    }
  }
  const burst = exp.burstCheck.stats as { exported: number, dropped: Record<string, number> }
  console.log(`  burst check: ${EXPORT_TRACES} traces ended at once → exported ${burst.exported}, dropped ${JSON.stringify(nonZero(burst.dropped))}`)
}

export function printSerialization (s: Record<string, any>): void {
  console.log(`\nserialization alone, µs of CPU per trace (median of ${String(s.reps)} passes over ${String(s.n)} chat traces of ${String(s.spansPerTrace)} spans; bytes per trace):`)
  const rows: Array<[string, string]> = [
    ['traceInfoJson', 'TraceInfo JSON (StartTraceV3, both paths)'],
    ['otlpProtobuf', 'OTLP/protobuf, one trace per request'],
    ['otlpProtobufBatched', `OTLP/protobuf, ${String(s.batch)} traces per request (the default path)`],
    ['tracesJson', 'traces.json document (the artifact path)'],
    ['otlpJson', 'OTLP/JSON (OpenTelemetry JsonTraceSerializer), one trace per request'],
    ['otlpJsonBatched', `OTLP/JSON, ${String(s.batch)} traces per request`]
  ]
  for (const [key, label] of rows) {
    const m = s[key] as { medianUs: number, bestUs: number, bytesPerTrace: number }
    console.log(`  ${pad(label, 72)} ${pad(m.medianUs.toFixed(2), 7, true)} µs (best ${m.bestUs.toFixed(2)}), ${m.bytesPerTrace} B`)
  }
}

export function printOutage (o: Record<string, any>): void {
  const m = o.memoryMiB as Record<string, { rss: number, heapUsed: number }>
  const q = o.queue as { maxQueued: number, maxQueuedMiB: number, final: { queued: number, queuedBytes: number, retried: number, dropped: Record<string, number> } }
  console.log(`  achieved ${String(o.achievedReqPerSec)} req/s, p50 ${String(o.p50Ms)} ms, p99 ${String(o.p99Ms)} ms, errors ${String(o.errors)}`)
  console.log(`  RSS MiB: baseline ${m.baseline.rss}, max ${m.max.rss}, final ${m.final.rss}, growth ${m.growth.rss} (second half ${m.secondHalfGrowth.rss})`)
  console.log(`  heapUsed MiB: baseline ${m.baseline.heapUsed}, max ${m.max.heapUsed}, final ${m.final.heapUsed}, growth ${m.growth.heapUsed} (second half ${m.secondHalfGrowth.heapUsed})`)
  console.log(`  queue: max ${q.maxQueued} traces / ${q.maxQueuedMiB} MiB; final queued ${q.final.queued} (${mib(q.final.queuedBytes)} MiB), retried ${q.final.retried}, dropped ${JSON.stringify(nonZero(q.final.dropped))}`)
}

export function printOutageControl (c: Record<string, unknown>, seconds: number): void {
  console.log(`  control (traced-sink, server up, same ${OUTAGE_RATE} req/s for ${seconds} s): p50 ${String(c.p50Ms)} ms, p99 ${String(c.p99Ms)} ms, ` +
    `RSS ${JSON.stringify(c.rssMiB)} MiB`)
}
