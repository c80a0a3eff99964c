import type { ServerResponse } from 'node:http'
import type { Request } from 'express'
import { captureResponse, streamTap } from '../core/response-body'
import { stateOf, type ExpressState } from './request-state'

type Push = ((chunk: unknown) => void) | undefined
type TracedResponse = ServerResponse & { req: Request | undefined }

const tapped = new WeakSet<object>()
/** Set on a response's first write: its body is streamed (SSE, res.write), not sent whole. */
const streams = new WeakMap<ExpressState, Push>()

/**
 * Express sends a body through the Node response's write() and end() (res.json and res.send call
 * end once with the whole body). The wrappers go on the app's response prototype (Express gives
 * each app its own), once: wrapping each response's own write and end instead gave every response
 * a new shape, which made Node's HTTP code slower for the whole process (measured: the app served
 * 40 % of bare Express's rate). A response finds its trace through its request.
 */
export function tapResponses (res: ServerResponse): void {
  const proto = Object.getPrototypeOf(res) as ServerResponse
  if (tapped.has(proto)) return
  tapped.add(proto)
  const { write, end } = proto
  proto.write = function tappedWrite (this: TracedResponse, chunk: unknown, ...rest: unknown[]): boolean {
    const state = stateOf(this.req)
    if (state !== undefined) {
      if (!streams.has(state)) streams.set(state, streamTap(state, this.getHeader('content-type'), this.getHeader('content-encoding')))
      streams.get(state)?.(chunk)
    }
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
  } as ServerResponse['write']
  proto.end = function tappedEnd (this: TracedResponse, chunk: unknown, ...rest: unknown[]): ServerResponse {
    const state = stateOf(this.req)
    if (state !== undefined && chunk !== undefined && chunk !== null && typeof chunk !== 'function') {
      if (streams.has(state)) streams.get(state)?.(chunk)
      else captureResponse(state, chunk, this.getHeader('content-type'))
    }
    return (end as (...args: unknown[]) => ServerResponse).call(this, chunk, ...rest)
  } as ServerResponse['end']
}
