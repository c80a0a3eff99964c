import type { FastifyRequest } from 'fastify'

const MAX_ID = 250

/** MLflow's `client_request_id`: the proxy's request id (Databricks Apps send X-Request-Id), else Fastify's. */
export function clientRequestId (request: FastifyRequest, header: string | false): string {
  const value = header === false ? undefined : request.headers[header]
  return typeof value === 'string' && value !== '' ? value.slice(0, MAX_ID) : String(request.id)
}
