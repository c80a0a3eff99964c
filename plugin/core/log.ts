/** The part of a pino logger that trace-id correlation uses. */
export interface BindableLogger {
  child: (bindings: Record<string, unknown>) => BindableLogger
  setBindings?: (bindings: Record<string, unknown>) => void
}

/**
 * Puts the trace id on a request's logger. setBindings changes the child logger in place, so that
 * every holder of it (Fastify's reply.log, pino-http's res.log and its "request completed" line)
 * carries the id too; without it, the caller gets a new child to put in place.
 */
export function withTraceId<L extends BindableLogger> (log: L, key: string, traceId: string): L {
  const bindings = { [key]: traceId }
  if (typeof log.setBindings === 'function') {
    log.setBindings(bindings)
    return log
  }
  return log.child(bindings) as L
}
