import { TraceMetadata } from '../trace/constants'
import type { MlflowClient, StoredTraceInfo } from './client'

export interface TraceQuery {
  user?: string
  session?: string
  /** `mlflow.source.type`, which the plugin fills from APP_ENVIRONMENT. */
  environment?: string
  clientRequestId?: string
  status?: 'OK' | 'ERROR'
  /** Inclusive lower bound of the trace start. */
  from?: Date | number
  /** Exclusive upper bound of the trace start. */
  to?: Date | number
}

interface Condition {
  /** How the filter string names the field. */
  field: string
  value: string
  read: (trace: StoredTraceInfo) => string | undefined
}

/**
 * Builds an MLflow search filter that matches exactly the query, whatever the values contain.
 *
 * MLflow's parser has no escape sequences in string literals (settled against a 3.17.2 server:
 * `'o''brien'` and `'o\'brien'` match nothing, a backslash is literal). So a value is put in single
 * quotes, or in double quotes if it contains `'`; a value with both quote kinds becomes a LIKE
 * pattern with `_` in place of each `'`, which can only widen the match, and `matches` narrows
 * the results back to the exact values.
 */
export function traceFilter (query: TraceQuery): { filter: string, matches: (trace: StoredTraceInfo) => boolean } {
  const conditions: Condition[] = []
  const metadata = (key: string, value: string | undefined): void => {
    if (value !== undefined) conditions.push({ field: `metadata.\`${key}\``, value, read: t => t.trace_metadata[key] })
  }
  metadata(TraceMetadata.USER, query.user)
  metadata(TraceMetadata.SESSION, query.session)
  metadata(TraceMetadata.SOURCE_TYPE, query.environment)
  // `trace.client_request_id` is refused by 3.1-era parsers; 3.17.2 answers it (round trip).
  if (query.clientRequestId !== undefined) {
    conditions.push({ field: 'trace.client_request_id', value: query.clientRequestId, read: t => t.client_request_id })
  }
  if (query.status !== undefined) conditions.push({ field: 'trace.status', value: query.status, read: t => t.state })

  const clauses = conditions.map(({ field, value }) => {
    if (!value.includes("'")) return `${field} = '${value}'`
    if (!value.includes('"')) return `${field} = "${value}"`
    return `${field} LIKE '${value.replaceAll("'", '_')}'`
  })
  if (query.from !== undefined) clauses.push(`trace.timestamp_ms >= ${epochMs(query.from, 'from')}`)
  if (query.to !== undefined) clauses.push(`trace.timestamp_ms < ${epochMs(query.to, 'to')}`)
  return {
    filter: clauses.join(' AND '),
    matches: trace => conditions.every(c => c.read(trace) === c.value)
  }
}

/** Every trace matching the query, newest first, across pages, up to `limit`. */
export async function findTraces (
  client: MlflowClient, experimentIds: string[], query: TraceQuery, limit = 100
): Promise<StoredTraceInfo[]> {
  const { filter, matches } = traceFilter(query)
  const found: StoredTraceInfo[] = []
  let pageToken: string | undefined
  do {
    // The server refuses max_results above 500.
    const page = await client.searchTraces({
      experimentIds, filter: filter === '' ? undefined : filter, maxResults: Math.min(500, limit), orderBy: ['timestamp_ms DESC'], pageToken
    })
    for (const trace of page.traces) if (matches(trace) && found.length < limit) found.push(trace)
    pageToken = page.nextPageToken
  } while (pageToken !== undefined && found.length < limit)
  return found
}

function epochMs (time: Date | number, name: string): number {
  const ms = time instanceof Date ? time.getTime() : time
  if (!Number.isFinite(ms)) throw new TypeError(`TraceQuery.${name} must be a Date or epoch milliseconds`)
  return Math.trunc(ms)
}
