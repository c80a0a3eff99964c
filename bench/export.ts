// Export throughput into the real MLflow server: the pipeline (the plugin's queue) against
// one-at-a-time upload, for each way spans can go (OTLP into the span store, the default; the
// traces.json artifact) side by side, with the app's and the server's CPU per exported trace; and the
// CPU of serialization alone.
import { mlflowUri, runWorker } from './children'
import { CHAT_TRACE_SPANS } from './chat-trace'
import { cpuWindow, waitForQuiet, type CpuWindow } from './cpu'
import { nonZero, r1, r2 } from './report'
import { EXPORT_ALL_CONCURRENCY, EXPORT_RATIO_TARGET, EXPORT_TRACES, SEQUENTIAL_MAX_SEC } from './settings'

type SpanPath = 'otlp' | 'artifact'
const PATHS: SpanPath[] = ['otlp', 'artifact']
type Mode = 'pipeline' | 'sequential'

/** CPU while the worker exported (between its phase lines), in % of one core and per exported trace. */
export interface ExportCpu {
  seconds: number
  appPct: number
  mlflowPct: number
  otherPct: number
  otherTop: CpuWindow['otherTop']
  appMsPerTrace: number
  mlflowMsPerTrace: number
}

function exportCpu (cpu: CpuWindow | undefined, seconds: number, exported: number): ExportCpu | undefined {
  if (cpu === undefined || !(exported > 0)) return undefined
  const msPerTrace = (pct: number): number => r2(pct / 100 * seconds * 1000 / exported)
  return {
    seconds: r1(seconds), appPct: cpu.serverPct, mlflowPct: cpu.mlflowPct, otherPct: cpu.otherPct, otherTop: cpu.otherTop,
    appMsPerTrace: msPerTrace(cpu.serverPct), mlflowMsPerTrace: msPerTrace(cpu.mlflowPct)
  }
}

/** Runs bench/export-worker.ts; the CPU window covers its export alone, not start-up or the read-back. */
async function exportWorker (args: Record<string, unknown>, timeoutMs: number): Promise<Record<string, any>> {
  let end: (() => CpuWindow | undefined) | undefined
  let started = 0
  let cpu: CpuWindow | undefined
  let seconds = 0
  const { result, warnings } = await runWorker('export-worker.js', args, timeoutMs, (line, pid) => {
    const phase = line.startsWith('{"phase"') ? (JSON.parse(line) as { phase: string }).phase : undefined
    if (phase === 'exporting') {
      end = cpuWindow(pid)
      started = performance.now()
    } else if (phase === 'exported' && end !== undefined) {
      cpu = end()
      seconds = (performance.now() - started) / 1000
    }
  })
  return { ...result, cpu: exportCpu(cpu, seconds, result.exported), ...(warnings.length > 0 ? { stderrFirstLines: warnings } : {}) }
}

/** Every trace the run exported is in the experiment, with its spans where the path puts them, and one read back whole. */
function everyTraceStored (res: Record<string, any>, path: SpanPath): boolean {
  const inSpanStore = (res.spansLocation as Record<string, number>).TRACKING_STORE ?? 0
  const spans = res.spansOfLastTrace ?? res.spansOfFirstTrace
  return res.storedInExperiment === res.exported && spans === CHAT_TRACE_SPANS &&
    (path === 'otlp' ? inSpanStore === res.exported : inSpanStore === 0)
}

function cpuNote (cpu: ExportCpu | undefined): string {
  return cpu === undefined
    ? ''
    : `cpu: app ${cpu.appPct}% = ${cpu.appMsPerTrace} ms/trace, MLflow ${cpu.mlflowPct}% = ${cpu.mlflowMsPerTrace} ms/trace, other ${cpu.otherPct}%`
}

async function exportRun (mode: Mode, path: SpanPath, stamp: number, concurrency?: number): Promise<Record<string, any>> {
  await waitForQuiet(15)
  const what = mode === 'pipeline' ? `pipeline, concurrency ${concurrency ?? 'default (8)'}` : `sequential, one trace at a time (at most ${SEQUENTIAL_MAX_SEC} s)`
  console.log(`  ${what}, spans via ${path}: ${EXPORT_TRACES} traces …`)
  const res = await exportWorker({
    mode, n: EXPORT_TRACES, uri: mlflowUri(), spanUpload: path, concurrency,
    experimentName: `bench-export-${mode}-${path}-c${concurrency ?? 'default'}-${stamp}`,
    maxSeconds: mode === 'sequential' ? SEQUENTIAL_MAX_SEC : undefined
  }, 600_000)
  res.everyTraceStored = everyTraceStored(res, path)
  const outcome = mode === 'pipeline'
    ? `dropped ${JSON.stringify(nonZero(res.stats.dropped))}, retried ${res.stats.retried}`
    : `${res.failed} failed`
  console.log(`    ${r1(res.tracesPerSec)} traces/s landed, exported ${res.exported}/${EXPORT_TRACES}, ${outcome}; stored ${res.storedInExperiment} ` +
    `(spans location ${JSON.stringify(res.spansLocation)}), spans of one trace read back ${res.spansOfLastTrace ?? res.spansOfFirstTrace}; ${cpuNote(res.cpu)}`)
  return res
}

/** a / b, rounded; null when either is missing. */
function ratio (a: number | undefined, b: number | undefined): number | null {
  return a === undefined || b === undefined || b === 0 ? null : r2(a / b)
}

export async function exportThroughput (): Promise<Record<string, any>> {
  const stamp = Date.now()
  const runs: Record<Mode, Partial<Record<SpanPath, Record<string, any>>>> = { pipeline: {}, sequential: {} }
  for (const mode of ['pipeline', 'sequential'] as const) {
    for (const path of PATHS) runs[mode][path] = await exportRun(mode, path, stamp)
  }
  const byPath = Object.fromEntries(PATHS.map(path => {
    const p = runs.pipeline[path] as Record<string, any>
    const s = runs.sequential[path] as Record<string, any>
    return [path, {
      pipelineTracesPerSec: r1(p.tracesPerSec),
      sequentialTracesPerSec: r1(s.tracesPerSec),
      pipelineOverSequential: ratio(p.tracesPerSec, s.tracesPerSec),
      appMsPerTrace: { pipeline: p.cpu?.appMsPerTrace, sequential: s.cpu?.appMsPerTrace },
      mlflowMsPerTrace: { pipeline: p.cpu?.mlflowMsPerTrace, sequential: s.cpu?.mlflowMsPerTrace },
      everyTraceStored: p.everyTraceStored === true && s.everyTraceStored === true
    }]
  }))
  const otlpVsArtifact = Object.fromEntries((['pipeline', 'sequential'] as const).map(mode => {
    const o = runs[mode].otlp as Record<string, any>
    const a = runs[mode].artifact as Record<string, any>
    return [mode, {
      tracesPerSec: ratio(o.tracesPerSec, a.tracesPerSec),
      appCpuPerTrace: ratio(o.cpu?.appMsPerTrace, a.cpu?.appMsPerTrace),
      mlflowCpuPerTrace: ratio(o.cpu?.mlflowMsPerTrace, a.cpu?.mlflowMsPerTrace)
    }]
  }))

  // The target is the default path's: OTLP (what `auto` picks on this server).
  const pipeline = runs.pipeline.otlp as Record<string, any>
  const sequential = runs.sequential.otlp as Record<string, any>
  const pipelineRatio = pipeline.tracesPerSec / sequential.tracesPerSec
  const result: Record<string, any> = {
    traces: EXPORT_TRACES,
    runs,
    byPath,
    otlpVsArtifact,
    pipelineTracesPerSec: r1(pipeline.tracesPerSec),
    sequentialTracesPerSec: r1(sequential.tracesPerSec),
    ratio: r2(pipelineRatio),
    target: EXPORT_RATIO_TARGET,
    meetsTarget: pipelineRatio >= EXPORT_RATIO_TARGET,
    nothingLost: pipeline.stats.exported === EXPORT_TRACES && Object.values(pipeline.stats.dropped as Record<string, number>).every(v => v === 0),
    storedMatches: pipeline.storedInExperiment === EXPORT_TRACES
  }
  if (pipelineRatio < EXPORT_RATIO_TARGET || EXPORT_ALL_CONCURRENCY) {
    const more: Record<string, unknown> = {}
    for (const c of [4, 16]) {
      const res = await exportRun('pipeline', 'otlp', stamp, c)
      more[c] = { tracesPerSec: r1(res.tracesPerSec), ratio: r2(res.tracesPerSec / sequential.tracesPerSec), stats: res.stats, storedInExperiment: res.storedInExperiment, cpu: res.cpu }
    }
    result.otherConcurrency = more
  }
  // Why the pipeline run paces its producer: one synchronous burst above maxTraces drops the oldest.
  const burst = await exportWorker({ mode: 'burst-check', n: EXPORT_TRACES }, 60_000)
  result.burstCheck = { note: `${EXPORT_TRACES} roots ended in one synchronous burst into the default queue (in-memory sink)`, stats: burst.stats }
  return result
}

/** CPU per trace of serialization alone (bench/serialization-worker.ts), in a process of its own. */
export async function serializationCost (): Promise<Record<string, any>> {
  await waitForQuiet(15)
  return (await runWorker('serialization-worker.js', { n: 2000, reps: 9 }, 120_000)).result
}
