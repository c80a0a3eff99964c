// What every variant's server answers, whichever framework serves it.
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import { r1 } from './report'

export const STATS_PATH = '/__stats'
/** Spans the fastify-otel variant's exporter was handed: proof that the instrumentation ran. */
let otelSpans = 0
/** Requests answered on `/`: each one a trace where tracing is on. */
let served = 0
/** How late the event loop ran a 1-ms timer: a stall here delays every request then in the app. */
const loopDelay = monitorEventLoopDelay({ resolution: 1 })
loopDelay.enable()
/** The garbage collector's pauses of the main thread: a scavenge stops every request in the app while it runs. */
let gc = noPauses()
new PerformanceObserver(list => {
  for (const entry of list.getEntries()) {
    const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind
    if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
      gc.scavenges++
      gc.scavengeMs += entry.duration
    } else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
      gc.major++
      gc.majorMs += entry.duration
    }
    gc.maxMs = Math.max(gc.maxMs, entry.duration)
  }
}).observe({ entryTypes: ['gc'] })

export function countOtelSpans (n: number): void {
  otelSpans += n
}

/** The body of `/`. */
export function hello (): { hello: string } {
  served++
  return { hello: 'world' }
}

/**
 * The body of STATS_PATH (never traced): memory, requests served, the tracing stats, and since the
 * previous read the event loop's delay and the collector's pauses (ms).
 */
export function benchStats (tracing: { stats: () => unknown } | null): object {
  const delay = { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) }
  loopDelay.reset()
  const pauses = { scavenges: gc.scavenges, scavengeMs: Math.round(gc.scavengeMs), major: gc.major, majorMs: Math.round(gc.majorMs), maxMs: r1(gc.maxMs) }
  gc = noPauses()
  return { memory: process.memoryUsage(), served, tracing: tracing?.stats() ?? null, otelSpans, loopDelay: delay, gc: pauses }
}

/** The main thread's garbage-collection pauses over a window, in ms. */
export interface GcPauses { scavenges: number, scavengeMs: number, major: number, majorMs: number, maxMs: number }

function noPauses (): GcPauses {
  return { scavenges: 0, scavengeMs: 0, major: 0, majorMs: 0, maxMs: 0 }
}

function ms (ns: number): number {
  return r1(ns / 1e6)
}
