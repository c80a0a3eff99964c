import { parseArgs } from 'node:util'
import { findTraces, MlflowTracing, readTracesFile, traceFilter, TraceMetadata, type StoredTraceInfo, type TraceQuery } from 'fastify-mlflow-tracing'

const USAGE = `Lists traces, newest first, from the MLflow server in MLFLOW_TRACKING_URI or, without one,
from the local file (MLFLOW_TRACES_FILE, default ./mlflow-traces.jsonl).

  npm run traces -- [--user U] [--session S] [--env E] [--request-id R] [--status OK|ERROR] [--limit N] [--json]`

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      user: { type: 'string' },
      session: { type: 'string' },
      env: { type: 'string' },
      'request-id': { type: 'string' },
      status: { type: 'string' },
      limit: { type: 'string', default: '20' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  if (values.help) return console.log(USAGE)
  const query: TraceQuery = {
    user: values.user,
    session: values.session,
    environment: values.env,
    clientRequestId: values['request-id'],
    status: values.status as TraceQuery['status']
  }
  const limit = Number(values.limit)
  const quiet = { info () {}, warn () {}, error () {} }
  const tracing = new MlflowTracing({ logger: quiet })
  const traces = tracing.client === undefined
    ? fromFile(query, limit)
    : await findTraces(tracing.client, [await tracing.experimentId() as string], query, limit)
  if (values.json) return console.log(JSON.stringify(traces, null, 2))
  console.error(`${traces.length} trace(s) from ${tracing.destination}`)
  console.log(table(traces))
}

function fromFile (query: TraceQuery, limit: number): StoredTraceInfo[] {
  const { matches } = traceFilter(query)
  return readTracesFile(process.env.MLFLOW_TRACES_FILE ?? 'mlflow-traces.jsonl')
    .filter(matches)
    .reverse()
    .slice(0, limit)
}

function table (traces: StoredTraceInfo[]): string {
  const rows = traces.map(t => [
    t.request_time.replace('T', ' ').slice(0, 19),
    t.trace_id,
    t.state,
    `${Math.round(parseFloat(t.execution_duration) * 1000)} ms`,
    t.trace_metadata[TraceMetadata.USER] ?? '-',
    t.trace_metadata[TraceMetadata.SESSION] ?? '-',
    t.trace_metadata[TraceMetadata.SOURCE_TYPE] ?? '-',
    t.client_request_id ?? '-',
    (t.request_preview ?? '').replace(/\s+/g, ' ').slice(0, 40),
    feedback(t)
  ])
  const header = ['time (UTC)', 'trace id', 'state', 'duration', 'user', 'session', 'env', 'request id', 'request', 'feedback']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  return [header, ...rows].map(r => r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n')
}

/** The trace's live feedback, e.g. `user_feedback=false by alice@example.com ("too vague")`. */
function feedback (t: StoredTraceInfo): string {
  const live = (t.assessments ?? []).filter(a => a.feedback !== undefined && a.valid !== false)
  if (live.length === 0) return '-'
  return live.map(a => `${a.assessment_name}=${JSON.stringify(a.feedback?.value)} by ${a.source.source_id}` +
    (a.rationale === undefined || a.rationale === '' ? '' : ` (${JSON.stringify(a.rationale.replace(/\s+/g, ' ').slice(0, 40))})`)).join('; ')
}

main().catch(err => {
  console.error(err instanceof Error ? err.message : err)
  process.exit(1)
})
