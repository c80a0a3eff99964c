import type { ServerResponse } from 'node:http'
import type { Request } from 'express'
import type { TracedRequest } from '../core/request-state'
import { captureResponse, streamTap } from '../core/response-body'

const kTap = Symbol('fastify-mlflow-tracing.response-tap')

interface Tap {
  state: TracedRequest<Request>
  write: ServerResponse['write']
  end: ServerResponse['end']
  /** Set on the first write: the body is streamed (SSE, res.write), not sent whole. */
  push: ((chunk: unknown) => void) | undefined
  streaming: boolean
}

type TappedResponse = ServerResponse & { [kTap]: Tap }

/**
 * Express sends a body through the Node response's write() and end() (res.json and res.send call
 * end once with the whole body): wrapping them on this response sees the body as it goes. The
 * wrappers are shared functions, and the response's own write and end (another middleware's
 * wrappers included) still do the sending.
 */
export function tapResponse (state: TracedRequest<Request>, res: ServerResponse): void {
  ;(res as TappedResponse)[kTap] = { state, write: res.write, end: res.end, push: undefined, streaming: false }
  res.write = tappedWrite as ServerResponse['write']
  res.end = tappedEnd as ServerResponse['end']
}

function tappedWrite (this: TappedResponse, chunk: unknown, ...rest: unknown[]): boolean {
  const tap = this[kTap]
  if (!tap.streaming) {
    tap.streaming = true
    tap.push = streamTap(tap.state, this.getHeader('content-type'), this.getHeader('content-encoding'))
  }
  tap.push?.(chunk)
  return (tap.write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
}

function tappedEnd (this: TappedResponse, chunk: unknown, ...rest: unknown[]): ServerResponse {
  const tap = this[kTap]
  if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') {
    if (tap.streaming) tap.push?.(chunk)
    else captureResponse(tap.state, chunk, this.getHeader('content-type'))
  }
  return (tap.end as (...args: unknown[]) => ServerResponse).call(this, chunk, ...rest)
}
