// The run's settings, from the environment:
//   BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 3), BENCH_OUTAGE_SEC (s, 60), BENCH_EXPORT_TRACES
//   (1500), BENCH_SEQUENTIAL_MAX_SEC (150), BENCH_OUTAGE_RATE (req/s, 1000), BENCH_ROUNDS (2, the second
//   in reverse order; each variant's best quiet round is reported, all are kept in results.json: on a
//   2-core VM one round of the same server varies by up to ±25 %), BENCH_EXPORT_ALL_CONCURRENCY=1
//   (measure concurrency 4 and 16 even when the default, 8, meets the target), BENCH_QUIET_WAIT_SEC
//   (90: the most the run waits, in all, for other processes to go quiet before a measurement),
//   BENCH_NOISE_RETRIES (1: how often a round disturbed by other processes is measured again),
//   BENCH_VARIANTS (comma list), BENCH_SKIP (comma list of: variants, export, outage, capacity, spool),
//   BENCH_CAPACITY_SEC (15), BENCH_CAPACITY_RATES (req/s, 2000,5000), BENCH_CAPACITY_DELAYS (backend ms, 0,50),
//   BENCH_CAPACITY_ROUNDS (3: untraced and traced runs alternate, and each p99 is judged against its own
//   round's untraced run; on a 2-core VM one run's untraced p99 varies 2-3 × between runs),
//   BENCH_SPOOL_OUTAGE_SEC (s, 300) and BENCH_SPOOL_RATE (req/s, 20): the outage with the spool on.
// `--quick`: 3 s rounds, 10 s outage, 300 traces, 5 s capacity runs in one round, 20 s spool outage.
import { resolve } from 'node:path'
import type { Variant } from './server'

export const repoRoot = resolve(__dirname, '..', '..')
const quick = process.argv.includes('--quick')

export function num (name: string, fallback: number, zeroOk = false): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroOk)) throw new Error(`${name} must be a positive number, got '${raw}'`)
  return value
}

export const DURATION = num('BENCH_DURATION', quick ? 3 : 10)
export const WARMUP = num('BENCH_WARMUP', 3)
export const OUTAGE_SEC = num('BENCH_OUTAGE_SEC', quick ? 10 : 60)
export const EXPORT_TRACES = Math.round(num('BENCH_EXPORT_TRACES', quick ? 300 : 1500))
export const SEQUENTIAL_MAX_SEC = num('BENCH_SEQUENTIAL_MAX_SEC', 150)
export const OUTAGE_RATE = Math.round(num('BENCH_OUTAGE_RATE', 1000))
export const SPOOL_OUTAGE_SEC = num('BENCH_SPOOL_OUTAGE_SEC', quick ? 20 : 300)
export const SPOOL_RATE = Math.round(num('BENCH_SPOOL_RATE', 20))
export const ROUNDS = Math.round(num('BENCH_ROUNDS', quick ? 1 : 2))
export const NOISE_RETRIES = Math.round(num('BENCH_NOISE_RETRIES', 1, true))
export const EXPORT_ALL_CONCURRENCY = process.env.BENCH_EXPORT_ALL_CONCURRENCY === '1'
export const SKIP = new Set((process.env.BENCH_SKIP ?? '').split(',').filter(Boolean))
const ALL_VARIANTS: Variant[] = ['bare', 'disabled', 'traced-sink', 'traced-mlflow', 'fastify-otel', 'express-bare', 'express-traced']
export const VARIANTS = process.env.BENCH_VARIANTS !== undefined && process.env.BENCH_VARIANTS !== ''
  ? process.env.BENCH_VARIANTS.split(',') as Variant[]
  : ALL_VARIANTS
export const TARGETS: Partial<Record<Variant, number>> = { 'traced-sink': 0.85, 'traced-mlflow': 0.80, 'express-traced': 0.85 }
export const EXPORT_RATIO_TARGET = 3
export const LOAD = { connections: 100, pipelining: 10 }

function numList (name: string, fallback: number[]): number[] {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const values = raw.split(',').map(Number)
  if (values.some(v => !Number.isFinite(v) || v < 0)) throw new Error(`${name} must be a comma list of numbers ≥ 0, got '${raw}'`)
  return values
}

export const CAPACITY_SEC = num('BENCH_CAPACITY_SEC', quick ? 5 : 15)
export const CAPACITY_RATES = numList('BENCH_CAPACITY_RATES', [2000, 5000])
export const CAPACITY_DELAYS = numList('BENCH_CAPACITY_DELAYS', [0, 50])
export const CAPACITY_ROUNDS = Math.round(num('BENCH_CAPACITY_ROUNDS', quick ? 1 : 3))
