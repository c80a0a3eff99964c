import type { TimeInput } from '@opentelemetry/api'

const MS = 1_000_000n

// Wall-clock nanoseconds: the monotonic clock gives sub-millisecond order, Date.now() the wall
// time. The two drift apart (here by up to 0.4 ms in seconds, as the VM's clock is steered), and a
// span that started before a Date.now() read ahead of it would miss a `timestamp_ms >=` search:
// each reading stays within the millisecond Date.now() says, re-anchoring when it strays. The
// anchor settles on the edge of a tick, where it errs least.
let anchorNs = BigInt(Date.now()) * MS - process.hrtime.bigint()

export function nowNs (): bigint {
  const hr = process.hrtime.bigint()
  const wallNs = BigInt(Date.now()) * MS
  const ns = anchorNs + hr
  if (ns >= wallNs && ns < wallNs + MS) return ns
  anchorNs = wallNs - hr
  return wallNs
}

/** Converts the OTel API's time forms (HrTime, epoch milliseconds, Date) to epoch nanoseconds. */
export function toNs (time: TimeInput | undefined): bigint {
  if (time === undefined) return nowNs()
  if (Array.isArray(time)) return BigInt(time[0]) * 1_000_000_000n + BigInt(time[1])
  const ms = time instanceof Date ? time.getTime() : time
  // performance.now()-style readings are far below any epoch time; the OTel API allows both.
  const epochMs = ms < 1e11 ? performance.timeOrigin + ms : ms
  return BigInt(Math.round(epochMs * 1000)) * 1000n
}

// toISOString() costs about 0.5 µs; traces that start within the same second share all of it but
// the milliseconds.
let cachedSecond = NaN
let cachedPrefix = ''

/** google.protobuf.Timestamp in JSON form, millisecond precision. */
export function nsToRfc3339 (ns: bigint): string {
  const ms = Number(ns / 1_000_000n)
  const second = Math.floor(ms / 1000)
  if (second !== cachedSecond) {
    cachedSecond = second
    // Up to the seconds' dot, in whatever width the year takes.
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, -4)
  }
  const milli = ms - second * 1000
  return cachedPrefix + (milli < 10 ? '00' : milli < 100 ? '0' : '') + milli + 'Z'
}

/** google.protobuf.Duration in JSON form: seconds with nine fractional digits. */
export function nsToDuration (ns: bigint): string {
  const whole = ns / 1_000_000_000n
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0')
  return `${whole}.${frac}s`
}
