// What both example servers read from the environment, and their shutdown budget.

/** Databricks Apps kill the process 15 s after SIGTERM: close (and flush traces) well before. */
export const SHUTDOWN_BUDGET_MS = 14_000
export const FLUSH_TIMEOUT_MS = 10_000
/** Requests still running after this long are cut, so that the flush gets its time. */
export const DRAIN_MS = SHUTDOWN_BUDGET_MS - FLUSH_TIMEOUT_MS - 1_000

/** Databricks Apps set DATABRICKS_APP_PORT; PORT elsewhere. */
export function listenPort (env: NodeJS.ProcessEnv): number {
  return Number(env.DATABRICKS_APP_PORT ?? env.PORT ?? 3000)
}

export const logLevel = (env: NodeJS.ProcessEnv): string => env.LOG_LEVEL ?? 'info'

/** The tracing options the environment does not already give the plugin (MLFLOW_*, APP_ENVIRONMENT, ... it reads itself). */
export function tracingOptions (env: NodeJS.ProcessEnv): { flushTimeoutMs: number, spool: string | undefined, trustForwardedIdentity: true | undefined } {
  return {
    flushTimeoutMs: FLUSH_TIMEOUT_MS,
    // Traces that cannot be exported wait on disk for the server, even across a restart of the app.
    // MLFLOW_TRACING_SPOOL_DIR (the plugin reads it) names another directory, or none when empty.
    spool: env.MLFLOW_TRACING_SPOOL_DIR === undefined ? './.mlflow-spool' : undefined,
    // Behind the Databricks Apps proxy the plugin trusts X-Forwarded-* by itself; locally, only if asked.
    trustForwardedIdentity: env.TRUST_FORWARDED_IDENTITY === 'true' ? true : undefined
  }
}

/** On SIGTERM / SIGINT: `close` drains and flushes; `cutConnections` ends the ones still open after DRAIN_MS. */
export function closeOnSignals (log: { info: (obj: object, msg: string) => void, error: (err: unknown) => void },
  close: () => Promise<unknown>, cutConnections: () => void): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'closing: draining requests and flushing traces')
      setTimeout(() => process.exit(1), SHUTDOWN_BUDGET_MS).unref()
      setTimeout(cutConnections, DRAIN_MS).unref()
      close().then(() => process.exit(0), err => {
        log.error(err)
        process.exit(1)
      })
    })
  }
}
