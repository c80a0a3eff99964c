import type { IncomingHttpHeaders } from 'node:http'

/** What the core reads of a framework's request object (Fastify's and Express's both have it). */
export interface CoreRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  /** The parsed body, once a body parser has run. */
  body?: unknown
}

/** What the core reads of the Node response under the framework's (http/1 or http/2). */
export interface CoreResponse {
  readonly writableEnded: boolean
  readonly statusCode: number
}
