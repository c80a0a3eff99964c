// What every variant's server answers, whichever framework serves it.

export const STATS_PATH = '/__stats'
/** Spans the fastify-otel variant's exporter was handed: proof that the instrumentation ran. */
let otelSpans = 0
/** Requests answered on `/`: each one a trace where tracing is on. */
let served = 0

export function countOtelSpans (n: number): void {
  otelSpans += n
}

/** The body of `/`. */
export function hello (): { hello: string } {
  served++
  return { hello: 'world' }
}

/** The body of STATS_PATH (never traced): memory, requests served, the tracing stats. */
export function benchStats (tracing: { stats: () => unknown } | null): object {
  return { memory: process.memoryUsage(), served, tracing: tracing?.stats() ?? null, otelSpans }
}
