// A steady load: requests sent at evenly spaced times whatever the answers, each one's latency
// counted from when it was due (as wrk2 does), so a stalled app is charged for every request it
// held up. autocannon's `overallRate` is no steady load: each connection sends as fast as it can
// until its quota for the second is met, then waits for the next second, so every second opens
// with a burst and its p99 is how fast the app drains the burst.
import { createHistogram } from 'node:perf_hooks'
import { Pool } from 'undici'

export interface SteadyLoadResult {
  answered2xx: number
  /** Network errors, timeouts and answers other than 2xx. */
  errors: number
  achievedReqPerSec: number
  p50Ms: number
  p99Ms: number
  maxMs: number
}

/** How late a request may be answered before it counts as an error. */
const TIMEOUT_MS = 10_000

export async function steadyLoad (url: string, rate: number, seconds: number): Promise<SteadyLoadResult> {
  const target = new URL(url)
  // Enough connections that none waits for another at 20 ms a request.
  const pool = new Pool(target.origin, { connections: Math.max(100, Math.ceil(rate / 50)), headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS })
  const latencyUs = createHistogram()
  const total = Math.round(rate * seconds)
  let answered2xx = 0
  let errors = 0
  const outstanding = new Set<Promise<void>>()
  const send = (dueAt: number): void => {
    const done = pool.request({ method: 'GET', path: target.pathname }).then(async res => {
      await res.body.dump()
      if (res.statusCode >= 200 && res.statusCode < 300) answered2xx++
      else errors++
    }, () => { errors++ }).finally(() => {
      latencyUs.record(Math.max(1, Math.round((performance.now() - dueAt) * 1000)))
      outstanding.delete(done)
    })
    outstanding.add(done)
  }
  const started = performance.now()
  let sent = 0
  // Timers tick about once a millisecond: each tick sends what fell due since the last one.
  await new Promise<void>(resolve => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor((performance.now() - started) * rate / 1000) + 1)
      for (; sent < due; sent++) send(started + sent * 1000 / rate)
      if (sent < total) setTimeout(tick, 1)
      else resolve()
    }
    tick()
  })
  await Promise.all(outstanding)
  const elapsedSec = (performance.now() - started) / 1000
  await pool.close()
  return {
    answered2xx,
    errors,
    achievedReqPerSec: Math.round(answered2xx / elapsedSec),
    p50Ms: ms(latencyUs.percentile(50)),
    p99Ms: ms(latencyUs.percentile(99)),
    maxMs: ms(latencyUs.max)
  }
}

function ms (us: number): number {
  return Math.round(us / 100) / 10
}
