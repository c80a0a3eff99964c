import { TraceMetadata } from '../trace/constants'
import type { MlflowClient, StoredTraceInfo } from './client'
import { MlflowHttpError } from './http'

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

/**
 * Filter features some servers lack, each known by the words of the HTTP 400 they answer
 * (3.2–3.5 have neither; 3.6 and later have both).
 */
const OPTIONAL_FEATURES = {
  clientRequestId: "Invalid attribute key 'client_request_id'",
  like: "Invalid comparator 'LIKE'"
} as const

export type FilterFeature = keyof typeof OPTIONAL_FEATURES

interface Condition {
  /** How the filter string names the field. */
  field: string
  value: string
  read: (trace: StoredTraceInfo) => string | undefined
  needs?: FilterFeature
}

/**
 * Builds an MLflow search filter for the query, whatever the values contain, and `matches`, the
 * exact test: run it on every result, as the filter may match more than the query.
 *
 * MLflow's parser has no escape sequences in string literals (settled against a 3.17.2 server:
 * `'o''brien'` and `'o\'brien'` match nothing, a backslash is literal). So a value is put in single
 * quotes, or in double quotes if it contains `'`; a value with both quote kinds becomes a LIKE
 * pattern with `_` in place of each `'`, which can only widen the match. A condition needing a
 * feature in `lacking` is left out of the filter: `matches` alone applies it.
 */
export function traceFilter (
  query: TraceQuery, lacking: ReadonlySet<FilterFeature> = new Set()
): { filter: string, matches: (trace: StoredTraceInfo) => boolean } {
  const conditions: Condition[] = []
  const metadata = (key: string, value: string | undefined): void => {
    if (value !== undefined) conditions.push({ field: `metadata.\`${key}\``, value, read: t => t.trace_metadata[key] })
  }
  metadata(TraceMetadata.USER, query.user)
  metadata(TraceMetadata.SESSION, query.session)
  metadata(TraceMetadata.SOURCE_TYPE, query.environment)
  if (query.clientRequestId !== undefined) {
    conditions.push({ field: 'trace.client_request_id', value: query.clientRequestId, read: t => t.client_request_id, needs: 'clientRequestId' })
  }
  if (query.status !== undefined) conditions.push({ field: 'trace.status', value: query.status, read: t => t.state })

  const clauses: string[] = []
  for (const { field, value, needs } of conditions) {
    const clause = comparison(field, value)
    if (![needs, clause.needs].some(f => f !== undefined && lacking.has(f))) clauses.push(clause.text)
  }
  if (query.from !== undefined) clauses.push(`trace.timestamp_ms >= ${epochMs(query.from, 'from')}`)
  if (query.to !== undefined) clauses.push(`trace.timestamp_ms < ${epochMs(query.to, 'to')}`)
  return {
    filter: clauses.join(' AND '),
    matches: trace => conditions.every(c => c.read(trace) === c.value)
  }
}

function comparison (field: string, value: string): { text: string, needs?: FilterFeature } {
  if (!value.includes("'")) return { text: `${field} = '${value}'` }
  if (!value.includes('"')) return { text: `${field} = "${value}"` }
  return { text: `${field} LIKE '${value.replaceAll("'", '_')}'`, needs: 'like' }
}

/** Per client, the features its server refused, so later searches leave them out without paying the 400 again. */
const refusedBy = new WeakMap<MlflowClient, Set<FilterFeature>>()

/**
 * Every trace matching the query, newest first, across pages, up to `limit`. Where the server
 * refuses part of the filter, the search is repeated without it and narrowed client-side.
 */
export async function findTraces (
  client: MlflowClient, experimentIds: string[], query: TraceQuery, limit = 100
): Promise<StoredTraceInfo[]> {
  let refused = refusedBy.get(client)
  for (;;) {
    try {
      return await searchPages(client, experimentIds, traceFilter(query, refused), limit)
    } catch (err) {
      const feature = refusedFeature(err)
      if (feature === undefined || refused?.has(feature) === true) throw err
      if (refused === undefined) refusedBy.set(client, refused = new Set())
      refused.add(feature)
    }
  }
}

async function searchPages (
  client: MlflowClient, experimentIds: string[], { filter, matches }: ReturnType<typeof traceFilter>, limit: number
): Promise<StoredTraceInfo[]> {
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

function refusedFeature (err: unknown): FilterFeature | undefined {
  if (!(err instanceof MlflowHttpError && err.status === 400)) return undefined
  return (Object.keys(OPTIONAL_FEATURES) as FilterFeature[]).find(f => err.message.includes(OPTIONAL_FEATURES[f]))
}

function epochMs (time: Date | number, name: string): number {
  const ms = time instanceof Date ? time.getTime() : time
  if (!Number.isFinite(ms)) throw new TypeError(`TraceQuery.${name} must be a Date or epoch milliseconds`)
  return Math.trunc(ms)
}
