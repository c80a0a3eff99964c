import * as errors from '../errors'
import { MlflowHttpError } from './http-error'

/** An error as it crosses to another thread: structured clone keeps neither its class nor its code. */
export interface ErrorShape {
  message: string
  code?: string
  http?: { status: number, errorCode: string, retryAfterMs?: number }
}

export function errorShape (err: unknown): ErrorShape {
  if (err instanceof MlflowHttpError) return { message: err.message, http: { status: err.status, errorCode: err.errorCode, retryAfterMs: err.retryAfterMs } }
  if (!(err instanceof Error)) return { message: String(err) }
  const code = (err as { code?: unknown }).code
  return { message: err.message, code: typeof code === 'string' ? code : undefined }
}

/** The error again, of its own class where it was one of ours: callers test `code` and `instanceof`. */
export function errorFromShape (shape: ErrorShape): Error {
  if (shape.http !== undefined) return new MlflowHttpError(shape.message, shape.http.status, shape.http.errorCode, shape.http.retryAfterMs)
  const Coded = shape.code === undefined ? undefined : (errors as Record<string, unknown>)[shape.code]
  if (typeof Coded !== 'function') return new Error(shape.message)
  const err = new (Coded as new (...args: string[]) => Error)('', '')
  err.message = shape.message
  return err
}
