import type { EventEmitter } from 'node:events'
import { endTrace } from './end'
import type { CoreRequest, CoreResponse } from './request'
import type { TracedRequest } from './request-state'

const kState = Symbol('fastify-mlflow-tracing.state')

type Traced<T> = T & { [kState]: TracedRequest<CoreRequest> }
type RawRequest = EventEmitter & { readonly aborted: boolean }
type RawResponse = EventEmitter & CoreResponse

/**
 * Ends the trace when the connection is done with the response: the Node response's 'close' comes
 * after a whole body, after a streamed one (SSE) too, and for a client that left midway. Frameworks'
 * own "response sent" hooks miss the last case.
 */
export function endOnClose<R extends CoreRequest> (state: TracedRequest<R>, request: RawRequest, response: RawResponse): void {
  // Shared listeners rather than closures per request.
  ;(response as Traced<RawResponse>)[kState] = state as unknown as TracedRequest<CoreRequest>
  ;(request as Traced<RawRequest>)[kState] = state as unknown as TracedRequest<CoreRequest>
  response.on('close', onResponseClose)
  request.on('close', onRequestClose)
}

// The response's 'close' always comes, except for a pipelined request still waiting its turn when
// the client leaves: only its request says so. A request's 'close' also comes, unaborted, once its
// body has been read.
function onResponseClose (this: Traced<RawResponse>): void {
  const state = this[kState]
  if (state.ended) return
  if (this.writableEnded) endTrace(state, this.statusCode, undefined)
  else endTrace(state, undefined, 'client aborted the request')
}

function onRequestClose (this: Traced<RawRequest>): void {
  const state = this[kState]
  if (!state.ended && this.aborted && !state.response.writableEnded) endTrace(state, undefined, 'client aborted the request')
}
