import { FST_MLFLOW_INVALID_OPTION } from '../errors'

/**
 * What a request under a W3C `traceparent` becomes in MLflow:
 * - `separate`: an MLflow trace of its own, the caller's ids kept as `w3c.parent_*` metadata;
 * - `join`: spans in the caller's MLflow trace, under the caller's span, with no TraceInfo of its own.
 */
export type DistributedTracing = 'separate' | 'join'

const MODES: readonly DistributedTracing[] = ['separate', 'join']
const SETTING = 'distributedTracing (MLFLOW_DISTRIBUTED_TRACING)'

/** The option, else `MLFLOW_DISTRIBUTED_TRACING`, else `separate`; anything else throws, naming the setting. */
export function distributedTracingMode (value: unknown, env: Record<string, string | undefined>): DistributedTracing {
  const raw = value ?? emptyAsUnset(env.MLFLOW_DISTRIBUTED_TRACING)
  if (raw === undefined) return 'separate'
  if (!MODES.includes(raw as DistributedTracing)) {
    throw new FST_MLFLOW_INVALID_OPTION(SETTING, `expected one of ${MODES.join(', ')}, got ${JSON.stringify(raw) ?? typeof raw}`)
  }
  return raw as DistributedTracing
}

function emptyAsUnset (value: string | undefined): string | undefined {
  const v = value?.trim().toLowerCase()
  return v === '' ? undefined : v
}
