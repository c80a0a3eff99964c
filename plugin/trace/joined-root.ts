import { SpanAttribute, TraceMetadata } from './constants'
import type { TraceRecord } from './trace-record'

/**
 * A joined trace sends no TraceInfo (the caller owns it), so what this service knows about the
 * request goes on its root span instead: `user.id` and `session.id` where MLflow's span ingest
 * reads them (it fills the trace's user and session when the caller set none), the metadata under
 * its own keys, the client request id, and the tags under MLflow's `mlflow.traceTag.` prefix.
 * Attributes the root already has win.
 */
export function keepTraceInfoOnRoot (record: TraceRecord): void {
  const attributes = record.root.attributes
  const keep = (key: string, value: string | undefined): void => {
    if (value !== undefined) attributes[key] ??= value
  }
  keep(SpanAttribute.USER_ID, record.metadata[TraceMetadata.USER])
  keep(SpanAttribute.SESSION_ID, record.metadata[TraceMetadata.SESSION])
  keep(SpanAttribute.CLIENT_REQUEST_ID, record.clientRequestId)
  for (const key in record.metadata) keep(key, record.metadata[key])
  for (const key in record.sharedMetadata) keep(key, record.sharedMetadata[key])
  for (const key in record.tags) keep(SpanAttribute.TRACE_TAG_PREFIX + key, record.tags[key])
}
