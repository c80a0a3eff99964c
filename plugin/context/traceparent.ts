import { ROOT_CONTEXT, trace, TraceFlags, type Context } from '@opentelemetry/api'

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** The parent context of a W3C `traceparent` header (version 00), or the root context. */
export function parentFromTraceparent (header: string | string[] | undefined): Context {
  if (typeof header !== 'string') return ROOT_CONTEXT
  const m = TRACEPARENT.exec(header.trim())
  if (m === null || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return ROOT_CONTEXT
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: m[1], spanId: m[2], traceFlags: parseInt(m[3], 16) & TraceFlags.SAMPLED, isRemote: true
  })
}

/** A `traceparent` naming a sampled span (what MLflow's Python SDK sends, and nothing else). */
export function traceparentOf (traceId: string, spanId: string): string {
  return `00-${traceId}-${spanId}-01`
}
