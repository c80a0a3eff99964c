import { Redactor } from '../context/capture'
import { defaultRequestUser, type UserOptions } from '../context/user'
import { FST_MLFLOW_INVALID_OPTION } from '../errors'
import { SpanType } from '../trace/constants'
import { distributedTracingMode } from '../trace/distributed'
import type { MlflowTracing, MlflowTracingOptions } from '../tracing'
import type { CoreRequest } from './request'

type PerRequest<T, R> = T | ((request: R) => T)

/**
 * The options of the Fastify plugin and of the Express middleware alike; `R` is the framework's
 * request, which the per-request functions receive.
 */
export interface RequestTracingOptions<R extends CoreRequest = CoreRequest> extends MlflowTracingOptions {
  /** Default true (`MLFLOW_TRACING_ENABLED=false` turns it off). Off, only a no-op `request.mlflow` is added. */
  enabled?: boolean
  /** Share of requests traced, 0 to 1. Default 1. */
  sampleRate?: number
  /** Requests not to trace: path globs (`/health*`, `/static/**`) or a predicate. */
  ignore?: string | string[] | ((request: R) => boolean)
  /**
   * Make the root span the active OTel span for the whole request, so that `trace.getActiveSpan()`
   * and OTel instrumentations see it outside `request.mlflow.span()` callbacks too. Default false:
   * it needs AsyncLocalStorage on every request, which slows every promise in the process.
   * `request.mlflow.span()` callbacks always run with their span active.
   */
  activeRootSpan?: boolean
  /** MLflow span type of the root span. Default CHAIN; set AGENT per route with `config.mlflow.spanType`. */
  spanType?: SpanType
  /** Your own user lookup, asked first. Return undefined to fall through. */
  resolveUser?: (request: R) => string | undefined
  /** Read the user from `request.user` (set by an auth plugin such as @fastify/jwt or passport). Default: email, preferred_username, username, sub or id. */
  requestUser?: boolean | ((user: unknown) => string | undefined)
  /** Trust Databricks Apps' X-Forwarded-Email / -Preferred-Username / -User. Default: only on Databricks Apps (DATABRICKS_APP_NAME set). */
  trustForwardedIdentity?: boolean
  /** Take the user from this claim of an UNVERIFIED Bearer JWT. Off by default: anyone can mint one. */
  unverifiedJwtClaim?: string
  /** Header carrying the conversation id. Default `x-session-id`. */
  sessionHeader?: string
  /** Header whose value becomes `client_request_id`; the framework's request id otherwise. Default `x-request-id`; false always uses the framework's. */
  requestIdHeader?: string | false
  /** Response header carrying the trace id. Default `x-mlflow-trace-id`; false sends none. */
  traceIdHeader?: string | false
  /** Key of the trace id in `request.log` lines. Default `mlflow_trace_id`. */
  logKey?: string
  /** Extra trace metadata (immutable): fixed, or computed per request after authentication. */
  metadata?: PerRequest<Record<string, string>, R>
  /** Extra trace tags (mutable labels): fixed, or computed per request. */
  tags?: PerRequest<Record<string, string>, R>
  /** Record request and response bodies as the root span's inputs and outputs. Default true. */
  captureBody?: boolean
  /** Longest captured body, in characters of JSON. Default 10000. */
  maxBodyChars?: number
  /** Body fields replaced by `[REDACTED]`, in addition to the built-in list (password, token, secret, …). */
  redactFields?: string[]
  /** Request headers whose values must never be exported, in addition to Authorization, Cookie, Set-Cookie, X-Forwarded-Access-Token. */
  redactHeaders?: string[]
  /** Deadline for exporting queued traces when the server closes. Default 10000 ms (Databricks Apps allow 15 s). */
  flushTimeoutMs?: number
  /** An MlflowTracing to use instead of building one from these options (it is flushed, not shut down, on close). */
  tracing?: MlflowTracing
}

/** Per route: `{ config: { mlflow: false } }` or `{ config: { mlflow: { spanType: 'AGENT', captureBody: false } } }`. */
export interface RouteTracingConfig {
  spanType?: SpanType
  captureBody?: boolean
}

/** A route's tracing config, checked as the route is declared (Express's `tracing.route(config)`). */
export function validateRouteConfig (config: RouteTracingConfig): void {
  const { spanType, captureBody } = config
  if (spanType !== undefined && (typeof spanType !== 'string' || spanType.trim() === '')) {
    throw new FST_MLFLOW_INVALID_OPTION('spanType', `expected one of ${Object.values(SpanType).join(', ')}, got ${describe(spanType)}`)
  }
  if (captureBody !== undefined && typeof captureBody !== 'boolean') {
    throw new FST_MLFLOW_INVALID_OPTION('captureBody', `expected a boolean, got ${describe(captureBody)}`)
  }
}

const SECRET_HEADERS = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-forwarded-access-token', 'x-api-key']
const SECRET_FIELDS = ['password', 'passwd', 'secret', 'token', 'access_token', 'refresh_token', 'id_token', 'api_key', 'apikey',
  'authorization', 'cookie', 'client_secret', 'private_key']

export interface Settings<R extends CoreRequest = CoreRequest> {
  enabled: boolean
  sampleRate: number
  ignore: ((request: R) => boolean) | undefined
  activeRootSpan: boolean
  spanType: SpanType
  user: UserOptions<R>
  sessionHeader: string
  requestIdHeader: string | false
  traceIdHeader: string | false
  logKey: string
  metadata: PerRequest<Record<string, string>, R>
  tags: PerRequest<Record<string, string>, R>
  captureBody: boolean
  maxBodyChars: number
  redactor: Redactor
  flushTimeoutMs: number
}

export function validateOptions<R extends CoreRequest> (opts: RequestTracingOptions<R>, env: Record<string, string | undefined>): Settings<R> {
  const check = (ok: boolean, name: string, expected: string): void => {
    if (!ok) throw new FST_MLFLOW_INVALID_OPTION(name, `expected ${expected}, got ${describe((opts as Record<string, unknown>)[name])}`)
  }
  const optional = (name: keyof RequestTracingOptions, type: string): void => {
    const v = opts[name]
    check(v === undefined || typeof v === type, name, type === 'function' ? 'a function' : `a ${type}`)
  }
  for (const name of ['enabled', 'activeRootSpan', 'captureBody', 'trustForwardedIdentity'] as const) optional(name, 'boolean')
  for (const name of ['spanType', 'unverifiedJwtClaim', 'sessionHeader', 'logKey'] as const) {
    optional(name, 'string')
    check(opts[name] !== '', name, 'a non-empty string')
  }
  optional('resolveUser', 'function')
  const { sampleRate = 1, maxBodyChars = 10_000, flushTimeoutMs = 10_000 } = opts
  check(typeof sampleRate === 'number' && sampleRate >= 0 && sampleRate <= 1, 'sampleRate', 'a number from 0 to 1')
  check(Number.isInteger(maxBodyChars) && maxBodyChars > 0, 'maxBodyChars', 'a positive integer')
  check(Number.isInteger(flushTimeoutMs) && flushTimeoutMs > 0, 'flushTimeoutMs', 'a positive integer (milliseconds)')
  check(opts.requestUser === undefined || typeof opts.requestUser === 'boolean' || typeof opts.requestUser === 'function', 'requestUser', 'a boolean or a function')
  for (const name of ['requestIdHeader', 'traceIdHeader'] as const) {
    const v = opts[name]
    check(v === undefined || v === false || (typeof v === 'string' && v !== ''), name, 'a header name or false')
  }
  for (const name of ['metadata', 'tags'] as const) {
    const v = opts[name]
    check(v === undefined || typeof v === 'function' || isStringRecord(v), name, 'an object of strings or a function')
  }
  for (const name of ['redactFields', 'redactHeaders'] as const) {
    const v = opts[name]
    check(v === undefined || (Array.isArray(v) && v.every(x => typeof x === 'string')), name, 'an array of strings')
  }
  if (opts.spanType !== undefined && opts.spanType.trim() === '') check(false, 'spanType', `one of ${Object.values(SpanType).join(', ')}`)
  // The tracer holds the mode: one given with a ready-made `tracing` must be that tracing's.
  const distributed = distributedTracingMode(opts.distributedTracing, env)
  if (opts.tracing !== undefined && opts.distributedTracing !== undefined && opts.tracing.tracer.distributed !== distributed) {
    throw new FST_MLFLOW_INVALID_OPTION('distributedTracing', `the MlflowTracing given as \`tracing\` is in '${opts.tracing.tracer.distributed}' mode; set the mode on it`)
  }

  const secretHeaders = new Set([...SECRET_HEADERS, ...(opts.redactHeaders ?? []).map(h => h.toLowerCase())])
  const sessionHeader = (opts.sessionHeader ?? 'x-session-id').toLowerCase()
  const requestIdHeader = opts.requestIdHeader === false ? false : (opts.requestIdHeader ?? 'x-request-id').toLowerCase()
  for (const [name, header] of [['sessionHeader', sessionHeader], ['requestIdHeader', requestIdHeader]] as const) {
    if (header !== false && secretHeaders.has(header)) {
      throw new FST_MLFLOW_INVALID_OPTION(name, `'${header}' carries secrets and is never exported`)
    }
  }

  const requestUser = opts.requestUser ?? true
  return {
    enabled: opts.enabled ?? env.MLFLOW_TRACING_ENABLED?.toLowerCase() !== 'false',
    sampleRate,
    ignore: ignoreMatcher(opts.ignore),
    activeRootSpan: opts.activeRootSpan ?? false,
    spanType: opts.spanType ?? SpanType.CHAIN,
    user: {
      resolveUser: opts.resolveUser,
      requestUser: requestUser === true ? defaultRequestUser : requestUser,
      trustForwardedIdentity: opts.trustForwardedIdentity ?? (env.DATABRICKS_APP_NAME !== undefined && env.DATABRICKS_APP_NAME !== ''),
      unverifiedJwtClaim: opts.unverifiedJwtClaim
    },
    sessionHeader,
    requestIdHeader,
    traceIdHeader: opts.traceIdHeader === false ? false : (opts.traceIdHeader ?? 'x-mlflow-trace-id'),
    logKey: opts.logKey ?? 'mlflow_trace_id',
    metadata: opts.metadata ?? {},
    tags: opts.tags ?? {},
    captureBody: opts.captureBody ?? true,
    maxBodyChars,
    redactor: new Redactor(new Set([...SECRET_FIELDS, ...(opts.redactFields ?? [])].map(f => f.toLowerCase()))),
    flushTimeoutMs
  }
}

function ignoreMatcher<R extends CoreRequest> (ignore: RequestTracingOptions<R>['ignore']): ((request: R) => boolean) | undefined {
  if (ignore === undefined) return undefined
  if (typeof ignore === 'function') return ignore
  const globs = typeof ignore === 'string' ? [ignore] : ignore
  if (!Array.isArray(globs) || !globs.every(g => typeof g === 'string' && g.startsWith('/'))) {
    throw new FST_MLFLOW_INVALID_OPTION('ignore', `expected path globs starting with '/' or a function, got ${describe(ignore)}`)
  }
  const pattern = new RegExp('^(?:' + globs.map(globToRegExp).join('|') + ')$')
  return request => {
    const q = request.url.indexOf('?')
    return pattern.test(q === -1 ? request.url : request.url.slice(0, q))
  }
}

/** `**` spans segments, `*` and `?` stay within one. */
function globToRegExp (glob: string): string {
  return glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*|\*|\?/g, m => m === '**' ? '.*' : m === '*' ? '[^/]*' : '[^/]')
}

function isStringRecord (value: unknown): value is Record<string, string> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every(v => typeof v === 'string')
}

function describe (value: unknown): string {
  if (typeof value === 'function') return 'a function'
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
