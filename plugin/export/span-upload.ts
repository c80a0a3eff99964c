import { FST_MLFLOW_UNSUPPORTED_SERVER } from '../errors'
import type { MlflowClient } from './client'
import { MlflowHttpError } from './http'

/** How a destination takes spans: OTLP into its span store, or the `traces.json` artifact. */
export type SpanUpload = 'otlp' | 'artifact'
export type SpanUploadOption = 'auto' | SpanUpload

export interface Negotiated {
  upload: SpanUpload
  /** The server's own word for its version; undefined where it has none to give (Databricks, some proxies). */
  serverVersion: string | undefined
  /**
   * StartTraceV3 may go alongside the spans. From 3.7 the server takes either first, and every
   * span write marks the trace's spans as in its database; before, only the span write that made
   * the trace's row did, so StartTraceV3 had to wait for it.
   */
  startWithSpans: boolean
}

/** StartTraceV3 and SearchTracesV3 arrived in MLflow 3.2; 3.1 answers them 404. */
export const MIN_SERVER_VERSION = '3.2'
/** From 3.4 on, MLflow's own client sends spans over OTLP (RestStore.log_spans). */
const OTLP_SINCE = '3.4'
const START_WITH_SPANS_SINCE = '3.7'

/**
 * Decided once per destination. Databricks takes experiment traces' spans as artifacts only (its
 * OTLP route serves Unity Catalog tables), as MLflow's SDKs send them. An OSS server from 3.4 gets
 * OTLP; one whose store cannot hold spans (a file store: 501) or that lacks the route (404) makes the
 * sink fall back to artifacts at its first answer.
 */
export async function negotiateSpanUpload (client: MlflowClient, databricks: boolean, option: SpanUploadOption): Promise<Negotiated> {
  if (databricks) return { upload: 'artifact', serverVersion: undefined, startWithSpans: false }
  const serverVersion = await versionOf(client)
  if (serverVersion !== undefined && older(serverVersion, MIN_SERVER_VERSION)) {
    throw new FST_MLFLOW_UNSUPPORTED_SERVER(serverVersion, MIN_SERVER_VERSION)
  }
  const upload = option !== 'auto' ? option : serverVersion !== undefined && older(serverVersion, OTLP_SINCE) ? 'artifact' : 'otlp'
  return { upload, serverVersion, startWithSpans: upload === 'otlp' && serverVersion !== undefined && !older(serverVersion, START_WITH_SPANS_SINCE) }
}

/** The answers that mean "this server cannot take OTLP spans", as opposed to a failure. */
export function otlpUnsupported (err: unknown): boolean {
  return err instanceof MlflowHttpError && (err.status === 404 || err.status === 501)
}

async function versionOf (client: MlflowClient): Promise<string | undefined> {
  try {
    const version = await client.serverVersion()
    return /^\d+\.\d+/.test(version) ? version : undefined
  } catch (err) {
    // No /version (a proxy in front of the server): let the first export tell.
    if (err instanceof MlflowHttpError && err.status === 404) return undefined
    throw err
  }
}

function older (version: string, than: string): boolean {
  const a = version.split('.').map(n => parseInt(n, 10))
  const b = than.split('.').map(n => parseInt(n, 10))
  for (let i = 0; i < b.length; i++) {
    if ((a[i] ?? 0) !== b[i]) return (a[i] ?? 0) < b[i]
  }
  return false
}
