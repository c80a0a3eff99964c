import { setTimeout as sleep } from 'node:timers/promises'
import { FST_MLFLOW_FEEDBACK_UNDELIVERED } from '../errors'
import { backoffDelay, type BackoffOptions } from '../export/backoff'
import { MlflowHttpError } from '../export/http'

/** The caller's deadline: `at` in Date.now() time, `timeoutMs` to name it in errors. */
export interface Deadline {
  timeoutMs: number
  at: number
}

/** What an attempt returns to be tried again after a pause (e.g. the trace is not exported yet). */
export const AGAIN = Symbol('again')

/**
 * Runs `attempt` until it returns, retrying it with backoff as the export queue does (network
 * errors, timeouts, 429, 5xx; Retry-After honoured) while the next try can start before the
 * deadline. The signal aborts calls in flight at the deadline; a call aborted there may still have
 * reached the server, so each attempt must first look at what is stored.
 * @param waiting what AGAIN meant, for the error at the deadline
 */
export async function untilDeadline<T> (
  traceId: string, deadline: Deadline, backoff: BackoffOptions, waiting: string,
  attempt: (signal: AbortSignal) => Promise<T | typeof AGAIN>
): Promise<T> {
  const { timeoutMs, at } = deadline
  const signal = AbortSignal.timeout(Math.max(0, at - Date.now()))
  let why = waiting
  const gaveUp = (tries: number): string => `${why}; gave up at the ${timeoutMs} ms deadline after ${tries} tries`
  for (let tries = 1; ; tries++) {
    let retryAfterMs: number | undefined
    try {
      const result = await attempt(signal)
      if (result !== AGAIN) return result
      why = waiting
    } catch (err) {
      if (!(err instanceof MlflowHttpError)) throw err
      // A try cut off by the deadline says why the tries before it failed, which is the news.
      if (signal.aborted) {
        throw new FST_MLFLOW_FEEDBACK_UNDELIVERED(traceId, tries === 1
          ? `no outcome within ${timeoutMs} ms (${err.message})`
          : `${gaveUp(tries)}, the last cut off (${err.message})`)
      }
      if (!err.retryable) throw err
      why = err.message
      retryAfterMs = err.retryAfterMs
    }
    const delay = backoffDelay(backoff, tries, retryAfterMs)
    if (Date.now() + delay >= at) throw new FST_MLFLOW_FEEDBACK_UNDELIVERED(traceId, gaveUp(tries))
    await sleep(delay)
  }
}
