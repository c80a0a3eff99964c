// `npm run bench`: request overhead of the plugin against bare Fastify and @fastify/otel (variants.ts),
// export throughput into a real MLflow server over each span path and the CPU of serialization
// alone (export.ts), memory during a tracking-server outage (outage.ts), and the capacity of one app
// process exporting into a latency-injecting stand-in backend (capacity.ts). Settings: settings.ts.
//
// Each variant's server runs in its own child process (dist/bench/server.js); autocannon runs here.
import { cpus } from 'node:os'
import { capacity, capacityVerdicts, printCapacityRow, printCapacityVerdicts } from './capacity'
import { runMain, startMlflow, stopMlflow } from './children'
import { quietBudget } from './cpu'
import { exportThroughput, serializationCost } from './export'
import { outage, outageControl } from './outage'
import { printSpoolOutage, spoolOutage } from './spool'
import { fastifyVersion, printExport, printOutage, printOutageControl, printSerialization, printVariants, runDescription, writeResults } from './report'
import { CAPACITY_DELAYS, CAPACITY_RATES, CAPACITY_ROUNDS, CAPACITY_SEC, DURATION, EXPORT_TRACES, LOAD, NOISE_RETRIES, OUTAGE_RATE, OUTAGE_SEC, ROUNDS, SEQUENTIAL_MAX_SEC, SKIP, SPOOL_OUTAGE_SEC, SPOOL_RATE, VARIANTS, WARMUP } from './settings'
import { runVariants } from './variants'
import { QUEUE_DEFAULTS } from '../plugin/export/queue'

/** Seconds the run should take on a quiet machine, and its quiet-wait budget on top. */
function estimateSec (): number {
  // Per span path: the pipeline at ≈ 55 traces/s, sequential at ≈ 15/s (capped), start-up and read-back.
  const exportSec = 2 * (EXPORT_TRACES / 55 + Math.min(EXPORT_TRACES / 15, SEQUENTIAL_MAX_SEC) + 5) + 10
  return 8 + (SKIP.has('variants') ? 0 : ROUNDS * VARIANTS.length * (WARMUP + DURATION + 2)) +
    (SKIP.has('export') ? 0 : exportSec) +
    (SKIP.has('outage') ? 0 : OUTAGE_SEC + 6 + Math.min(10, OUTAGE_SEC) + 3) +
    (SKIP.has('capacity') ? 0 : CAPACITY_ROUNDS * CAPACITY_RATES.length * (1 + CAPACITY_DELAYS.length) * (WARMUP + CAPACITY_SEC + 4)) +
    // The spool outage: two server starts (≈ 15 s each), the outage, and the replay (≈ 150 traces/s).
    (SKIP.has('spool') ? 0 : 30 + SPOOL_OUTAGE_SEC * (1 + SPOOL_RATE / 150)) + quietBudget()
}

async function main (): Promise<void> {
  const started = performance.now()
  const needMlflow = (!SKIP.has('variants') && VARIANTS.includes('traced-mlflow')) || !SKIP.has('export')
  const estimate = estimateSec()
  console.log(`bench: node ${process.version}, fastify ${fastifyVersion()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}; ` +
    `rounds ${WARMUP} s warm-up + ${DURATION} s, ${LOAD.connections} connections × pipelining ${LOAD.pipelining}; ` +
    `estimated total ≈ ${Math.round(estimate - quietBudget())} s if the machine is quiet, ` +
    `at most ≈ ${Math.round(estimate + ROUNDS * NOISE_RETRIES * VARIANTS.length * (WARMUP + DURATION + 2))} s if it is busy (quiet waits and repeated rounds); ` +
    `+ ≈ ${Math.round(2 * (EXPORT_TRACES / 60 + 5))} s if the export needs the concurrency 4/16 runs`)

  const mlflow = needMlflow ? await startMlflow() : undefined
  const results = runDescription(mlflow?.version)

  if (!SKIP.has('variants')) {
    const { rows, rounds } = await runVariants()
    if (ROUNDS > 1) results.roundsDetail = rounds.map(rs => rs.map(r => ({ name: r.name, reqPerSec: r.reqPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, cpu: r.cpu })))
    printVariants(rows)
    results.variants = rows
  }

  if (!SKIP.has('export')) {
    console.log('\nexport throughput into MLflow (traces landed per second), spans over OTLP and as the traces.json artifact:')
    const exp = await exportThroughput()
    printExport(exp)
    exp.serialization = await serializationCost()
    printSerialization(exp.serialization)
    results.export = exp
  }

  // The outage needs no tracking server: stop it first so that it takes no CPU.
  await stopMlflow()

  if (!SKIP.has('outage')) {
    console.log(`\noutage: tracking server down, ${OUTAGE_RATE} req/s for ${OUTAGE_SEC} s, default queue bound (${QUEUE_DEFAULTS.maxTraces} traces / ${QUEUE_DEFAULTS.maxBytes / 1024 / 1024} MiB) …`)
    const o = await outage()
    // The outage is the export's second half: results.export.outage.
    results.export = { ...(results.export as Record<string, unknown> | undefined), outage: o }
    printOutage(o)
    const controlSec = Math.min(10, OUTAGE_SEC)
    o.control = await outageControl(controlSec)
    printOutageControl(o.control as Record<string, unknown>, controlSec)
  }

  if (!SKIP.has('capacity')) {
    console.log(`\ncapacity: one app process, steady load ${CAPACITY_SEC} s (after ${WARMUP} s warm-up), stand-in backend answering after ${CAPACITY_DELAYS.join(' / ')} ms, ${CAPACITY_ROUNDS} rounds …`)
    const rows = await capacity(printCapacityRow)
    const verdicts = capacityVerdicts(rows)
    printCapacityVerdicts(verdicts)
    results.capacity = { seconds: CAPACITY_SEC, rounds: CAPACITY_ROUNDS, rows, verdicts }
  }

  if (!SKIP.has('spool')) {
    console.log(`\nspool: tracking server stopped for ${SPOOL_OUTAGE_SEC} s under ${SPOOL_RATE} req/s, the durable spool on, then started again on the same port and data …`)
    const o = await spoolOutage()
    results.spool = o
    printSpoolOutage(o)
  }

  const elapsed = (performance.now() - started) / 1000
  results.elapsedSec = Math.round(elapsed)
  writeResults(results, ['variants', 'export', 'outage', 'capacity', 'spool'].filter(k => SKIP.has(k)))
  console.log(`total elapsed ${elapsed.toFixed(0)} s (${(elapsed / 60).toFixed(1)} min)`)
}

runMain(main)
