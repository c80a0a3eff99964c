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
