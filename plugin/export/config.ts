import { resolve } from 'node:path'
import { FST_MLFLOW_INVALID_OPTION } from '../errors'
import { basicAuth, bearerAuth, databricksOAuth, noAuth, type AuthProvider } from './auth'
import type { SpanUploadOption } from './span-upload'
import type { SpoolOption } from './spool/options'

const SPAN_UPLOADS: readonly SpanUploadOption[] = ['auto', 'otlp', 'artifact']

/** Where traces go and how to reach it. Each option falls back to its environment variable. */
export interface DestinationOptions {
  /** `MLFLOW_TRACKING_URI`: an http(s) URL or `databricks`. Unset: traces go to a local JSON Lines file. */
  trackingUri?: string
  /** `MLFLOW_EXPERIMENT_ID`; wins over the name. */
  experimentId?: string
  /** `MLFLOW_EXPERIMENT_NAME`: found, or created if missing. */
  experimentName?: string
  /** `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`: basic auth for an OSS server. */
  trackingUsername?: string
  trackingPassword?: string
  /** `MLFLOW_TRACKING_TOKEN`: bearer auth for an OSS server. */
  trackingToken?: string
  /** `MLFLOW_WORKSPACE`: sent as `X-MLFLOW-WORKSPACE` to OSS servers with workspaces. */
  workspace?: string
  /** `DATABRICKS_HOST`, with `databricks` as the tracking URI. */
  databricksHost?: string
  /** `DATABRICKS_TOKEN`: a personal access token. */
  databricksToken?: string
  /** `DATABRICKS_CLIENT_ID` / `DATABRICKS_CLIENT_SECRET`: OAuth M2M (what Databricks Apps inject). */
  databricksClientId?: string
  databricksClientSecret?: string
  /** `MLFLOW_TRACES_FILE`: the local file of the embedded default. Default `./mlflow-traces.jsonl`. */
  tracesFile?: string
  /** `MLFLOW_HTTP_REQUEST_TIMEOUT`: per-call timeout in ms. Default 10000. */
  requestTimeoutMs?: number
  /**
   * `MLFLOW_TRACING_SPAN_UPLOAD`: how spans reach the server. `auto` (default) picks OTLP into the
   * span store where the server has one, else the `traces.json` artifact; `otlp` / `artifact` force one.
   */
  spanUpload?: SpanUploadOption
  /**
   * `MLFLOW_TRACING_SPOOL_DIR` (and `MLFLOW_TRACING_SPOOL_MAX_BYTES`, default 256 MiB): a directory
   * where traces that cannot be exported now wait on disk, for this process or the next one on the
   * same directory. Unset: they wait in memory only.
   */
  spool?: SpoolOption
}

export type Destination =
  | { kind: 'file', path: string }
  | {
    kind: 'mlflow'
    host: string
    databricks: boolean
    auth: AuthProvider
    authKind: 'none' | 'basic' | 'bearer' | 'databricks-pat' | 'databricks-oauth'
    experimentId?: string
    experimentName?: string
    workspace?: string
    timeoutMs: number
    spanUpload: SpanUploadOption
  }

type Env = Record<string, string | undefined>

export function resolveDestination (opts: DestinationOptions, env: Env = process.env): Destination {
  const pick = (value: string | undefined, name: string): string | undefined => {
    const v = value ?? env[name]
    return v === undefined || v.trim() === '' ? undefined : v.trim()
  }
  const timeoutMs = opts.requestTimeoutMs ?? numberFromEnv(env, 'MLFLOW_HTTP_REQUEST_TIMEOUT') ?? 10_000
  positiveInteger(timeoutMs, 'requestTimeoutMs (MLFLOW_HTTP_REQUEST_TIMEOUT)')
  const spanUpload: unknown = opts.spanUpload ?? pick(undefined, 'MLFLOW_TRACING_SPAN_UPLOAD') ?? 'auto'
  if (!SPAN_UPLOADS.includes(spanUpload as SpanUploadOption)) {
    throw new FST_MLFLOW_INVALID_OPTION('spanUpload (MLFLOW_TRACING_SPAN_UPLOAD)', `expected one of ${SPAN_UPLOADS.join(', ')}, got ${JSON.stringify(spanUpload)}`)
  }

  const uri = pick(opts.trackingUri, 'MLFLOW_TRACKING_URI')
  if (uri === undefined) {
    return { kind: 'file', path: resolve(pick(opts.tracesFile, 'MLFLOW_TRACES_FILE') ?? 'mlflow-traces.jsonl') }
  }

  const experimentId = pick(opts.experimentId, 'MLFLOW_EXPERIMENT_ID')
  const experimentName = pick(opts.experimentName, 'MLFLOW_EXPERIMENT_NAME')
  if (experimentId === undefined && experimentName === undefined) {
    throw new FST_MLFLOW_INVALID_OPTION('experimentId (MLFLOW_EXPERIMENT_ID)',
      'a tracking URI is set but no experiment; set experimentId (MLFLOW_EXPERIMENT_ID) or experimentName (MLFLOW_EXPERIMENT_NAME)')
  }
  if (experimentId !== undefined && !/^[\w-]+$/.test(experimentId)) {
    throw new FST_MLFLOW_INVALID_OPTION('experimentId (MLFLOW_EXPERIMENT_ID)', `'${experimentId}' is not an experiment id`)
  }
  const base = { experimentId, experimentName: experimentId === undefined ? experimentName : undefined, timeoutMs, spanUpload: spanUpload as SpanUploadOption }

  if (uri === 'databricks') {
    const rawHost = pick(opts.databricksHost, 'DATABRICKS_HOST')
    if (rawHost === undefined) {
      throw new FST_MLFLOW_INVALID_OPTION('databricksHost (DATABRICKS_HOST)', "the tracking URI is 'databricks' but no workspace host is set")
    }
    // Databricks Apps inject DATABRICKS_HOST without a scheme.
    const host = httpUrl(/^https?:\/\//.test(rawHost) ? rawHost : `https://${rawHost}`, 'databricksHost (DATABRICKS_HOST)')
    const token = pick(opts.databricksToken, 'DATABRICKS_TOKEN')
    const clientId = pick(opts.databricksClientId, 'DATABRICKS_CLIENT_ID')
    const clientSecret = pick(opts.databricksClientSecret, 'DATABRICKS_CLIENT_SECRET')
    if (token !== undefined) return { kind: 'mlflow', host, databricks: true, auth: bearerAuth(token), authKind: 'databricks-pat', ...base }
    if (clientId !== undefined && clientSecret !== undefined) {
      const auth = databricksOAuth({ host, clientId, clientSecret, timeoutMs })
      return { kind: 'mlflow', host, databricks: true, auth, authKind: 'databricks-oauth', ...base }
    }
    const missing = clientId === undefined ? 'databricksClientId (DATABRICKS_CLIENT_ID)' : 'databricksClientSecret (DATABRICKS_CLIENT_SECRET)'
    throw new FST_MLFLOW_INVALID_OPTION(missing,
      'Databricks needs a personal access token (DATABRICKS_TOKEN) or a service principal (DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET)')
  }
  if (uri.startsWith('databricks://')) {
    throw new FST_MLFLOW_INVALID_OPTION('trackingUri (MLFLOW_TRACKING_URI)',
      `configuration profiles ('${uri}') are not supported; use 'databricks' with DATABRICKS_HOST and credentials in the environment`)
  }

  const host = httpUrl(uri, 'trackingUri (MLFLOW_TRACKING_URI)')
  const workspace = pick(opts.workspace, 'MLFLOW_WORKSPACE')
  const username = pick(opts.trackingUsername, 'MLFLOW_TRACKING_USERNAME')
  const password = pick(opts.trackingPassword, 'MLFLOW_TRACKING_PASSWORD')
  const token = pick(opts.trackingToken, 'MLFLOW_TRACKING_TOKEN')
  if ((username === undefined) !== (password === undefined)) {
    const missing = username === undefined ? 'trackingUsername (MLFLOW_TRACKING_USERNAME)' : 'trackingPassword (MLFLOW_TRACKING_PASSWORD)'
    throw new FST_MLFLOW_INVALID_OPTION(missing, 'basic auth needs both a username and a password')
  }
  if (username !== undefined && password !== undefined) {
    return { kind: 'mlflow', host, databricks: false, auth: basicAuth(username, password), authKind: 'basic', workspace, ...base }
  }
  if (token !== undefined) {
    return { kind: 'mlflow', host, databricks: false, auth: bearerAuth(token), authKind: 'bearer', workspace, ...base }
  }
  return { kind: 'mlflow', host, databricks: false, auth: noAuth, authKind: 'none', workspace, ...base }
}

function httpUrl (value: string, setting: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new FST_MLFLOW_INVALID_OPTION(setting, `'${value}' is not a URL; use an http(s) URL or 'databricks'`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new FST_MLFLOW_INVALID_OPTION(setting,
      `unsupported scheme '${url.protocol}' in '${value}'; use an http(s) URL or 'databricks' (leave it unset to write traces to a local file)`)
  }
  return url.origin + url.pathname.replace(/\/+$/, '')
}

function numberFromEnv (env: Env, name: string): number | undefined {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return undefined
  const n = Number(raw)
  positiveInteger(n, name)
  return n
}

export function positiveInteger (value: unknown, setting: string): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new FST_MLFLOW_INVALID_OPTION(setting, `expected a positive integer, got ${JSON.stringify(value)}`)
  }
}
