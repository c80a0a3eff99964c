export interface BackoffOptions {
  /** First retry delay; doubles each try. */
  initialBackoffMs: number
  /** Longest delay, Retry-After included. */
  maxBackoffMs: number
}

/**
 * The delay before try `attempt + 1`: the server's Retry-After when it gave one, otherwise
 * exponential, drawn from the upper half of its ceiling so that many waiting callers spread out.
 */
export function backoffDelay (opts: BackoffOptions, attempt: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, opts.maxBackoffMs)
  const ceiling = Math.min(opts.initialBackoffMs * 2 ** (attempt - 1), opts.maxBackoffMs)
  return ceiling / 2 + Math.random() * ceiling / 2
}
