/** A failed call to the tracking server, classified for the retry policy. */
export class MlflowHttpError extends Error {
  constructor (
    message: string,
    /** HTTP status; 0 for network errors and timeouts. */
    readonly status: number,
    /** MLflow's `error_code`, or NETWORK / TIMEOUT / ABORTED. */
    readonly errorCode: string,
    readonly retryAfterMs?: number
  ) {
    super(message)
    this.name = 'MlflowHttpError'
  }

  /** Network errors, timeouts, 429 and 5xx may pass; other 4xx will fail the same way again. */
  get retryable (): boolean {
    if (this.errorCode === 'ABORTED') return false
    return this.status === 0 || this.status === 429 || this.status >= 500
  }
}

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  url: string
  headers?: Record<string, string>
  body?: string | Uint8Array
  timeoutMs: number
  signal?: AbortSignal
}

export interface HttpResponse {
  status: number
  text: string
}

/** One HTTP exchange with a deadline; any failure becomes an MlflowHttpError. */
export async function httpRequest (req: HttpRequest): Promise<HttpResponse> {
  const timeout = AbortSignal.timeout(req.timeoutMs)
  const signal = req.signal === undefined ? timeout : AbortSignal.any([timeout, req.signal])
  const what = `${req.method} ${redactQuery(req.url)}`
  let res: Response
  let text: string
  try {
    res = await fetch(req.url, { method: req.method, headers: req.headers, body: req.body as BodyInit | undefined, signal })
    text = await res.text()
  } catch (err) {
    if (req.signal?.aborted === true) throw new MlflowHttpError(`${what}: aborted`, 0, 'ABORTED')
    if (timeout.aborted) throw new MlflowHttpError(`${what}: no answer within ${req.timeoutMs} ms`, 0, 'TIMEOUT')
    const cause = (err as { cause?: { code?: string, message?: string } }).cause
    throw new MlflowHttpError(`${what}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, 0, 'NETWORK')
  }
  if (res.status >= 400) {
    const { code, message } = parseError(text)
    throw new MlflowHttpError(`${what}: HTTP ${res.status} ${code}: ${message}`, res.status, code,
      parseRetryAfter(res.headers.get('retry-after')))
  }
  return { status: res.status, text }
}

function parseError (text: string): { code: string, message: string } {
  try {
    const body = JSON.parse(text) as { error_code?: string, message?: string, detail?: unknown }
    return { code: body.error_code ?? 'HTTP_ERROR', message: body.message ?? JSON.stringify(body.detail ?? body) }
  } catch {
    return { code: 'HTTP_ERROR', message: text.slice(0, 500) }
  }
}

/** Retry-After is either delay-seconds or an HTTP date. */
export function parseRetryAfter (value: string | null): number | undefined {
  if (value === null || value.trim() === '') return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}

// Signed upload URLs carry their credential in the query string: keep it out of logs.
function redactQuery (url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q) + '?…'
}
