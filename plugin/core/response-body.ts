import { capturePayload } from '../context/capture'
import { StreamText, streamKind } from '../context/stream-capture'
import type { CoreRequest } from './request'
import type { TracedRequest } from './request-state'

/** A whole response body as the framework sends it: the root's outputs once the trace ends. */
export function captureResponse<R extends CoreRequest> (state: TracedRequest<R>, payload: unknown, contentType: unknown): void {
  const { settings, problems } = state.core
  problems.guard(() => { state.output = capturePayload(payload, contentType, settings.redactor, settings.maxBodyChars) })
}

/**
 * Starts gathering a streamed text body (SSE, JSON lines, text); returns what takes each chunk, or
 * undefined for a body that is not text or that a later step encoded (compression).
 */
export function streamTap<R extends CoreRequest> (state: TracedRequest<R>, contentType: unknown, contentEncoding: unknown): ((chunk: unknown) => void) | undefined {
  if (contentEncoding !== undefined && contentEncoding !== 'identity') return undefined
  const kind = streamKind(contentType)
  if (kind === undefined) return undefined
  const { settings, problems } = state.core
  const text = state.streamed = new StreamText(kind, settings.redactor, settings.maxBodyChars)
  return chunk => {
    try {
      text.push(chunk)
    } catch (err) {
      problems.failed(err)
    }
  }
}
