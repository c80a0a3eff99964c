import type { IncomingHttpHeaders } from 'node:http'

const MAX_ID = 250

/** MLflow's `client_request_id`: the proxy's request id (Databricks Apps send X-Request-Id), else the framework's. */
export function clientRequestId (headers: IncomingHttpHeaders, header: string | false, frameworkId: () => string): string {
  const value = header === false ? undefined : headers[header]
  return typeof value === 'string' && value !== '' ? value.slice(0, MAX_ID) : frameworkId()
}
