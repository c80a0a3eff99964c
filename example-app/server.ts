import { buildApp } from './app'

/** Databricks Apps kill the process 15 s after SIGTERM: close (and flush traces) well before. */
const SHUTDOWN_BUDGET_MS = 14_000
const FLUSH_TIMEOUT_MS = 10_000
/** Requests still running after this long are cut, so that the flush gets its time. */
const DRAIN_MS = SHUTDOWN_BUDGET_MS - FLUSH_TIMEOUT_MS - 1_000

async function main (): Promise<void> {
  const app = await buildApp({ logger: { level: process.env.LOG_LEVEL ?? 'info' } }, {
    flushTimeoutMs: FLUSH_TIMEOUT_MS,
    // Traces that cannot be exported wait on disk for the server, even across a restart of the app.
    // MLFLOW_TRACING_SPOOL_DIR (the plugin reads it) names another directory, or none when empty.
    spool: process.env.MLFLOW_TRACING_SPOOL_DIR === undefined ? './.mlflow-spool' : undefined,
    // Behind the Databricks Apps proxy the plugin trusts X-Forwarded-* by itself; locally, only if asked.
    trustForwardedIdentity: process.env.TRUST_FORWARDED_IDENTITY === 'true' ? true : undefined
  })
  const port = Number(process.env.DATABRICKS_APP_PORT ?? process.env.PORT ?? 3000)
  await app.listen({ host: '0.0.0.0', port })

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      app.log.info({ signal }, 'closing: draining requests and flushing traces')
      setTimeout(() => process.exit(1), SHUTDOWN_BUDGET_MS).unref()
      // Fastify runs onClose hooks (the plugin's flush) only once every connection is gone, and Node
      // never counts a connection opened but not yet used as idle: drain, then close them all.
      setTimeout(() => app.server.closeAllConnections(), DRAIN_MS).unref()
      app.close().then(() => {
        app.log.info({ stats: app.mlflowTracing.stats() }, 'closed')
        process.exit(0)
      }, err => {
        app.log.error(err)
        process.exit(1)
      })
    })
  }
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
