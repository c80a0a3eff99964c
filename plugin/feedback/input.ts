import { FST_MLFLOW_INVALID_FEEDBACK } from '../errors'

/** A feedback value: what MLflow stores as a protobuf Value and its UI shows as such. */
export type FeedbackValue = boolean | number | string | { [key: string]: unknown }

export interface FeedbackInput {
  /** The rated trace: `x-mlflow-trace-id` of the request it was about (`tr-` + 32 hex). */
  traceId: string
  value: FeedbackValue
  /** Why: the end user's comment. */
  rationale?: string
  /** Default `user_feedback`; one feedback per user, trace and name. */
  name?: string
  metadata?: Record<string, string>
}

export const DEFAULT_NAME = 'user_feedback'
const TRACE_ID = /^tr-[0-9a-f]{32}$/
const MAX_NAME = 250

/** Throws FST_MLFLOW_INVALID_FEEDBACK naming the first bad field. */
export function checkTraceId (traceId: unknown): string {
  if (typeof traceId !== 'string' || !TRACE_ID.test(traceId)) bad('traceId', 'want an MLflow trace id, tr- and 32 hex digits')
  return traceId
}

export function checkName (name: unknown): string {
  if (name === undefined) return DEFAULT_NAME
  if (typeof name !== 'string' || name.trim() === '' || name.length > MAX_NAME) bad('name', `want a non-empty string of at most ${MAX_NAME} characters`)
  return name
}

/** The input as it is stored, checked field by field. */
export function checkInput (input: FeedbackInput): Required<Omit<FeedbackInput, 'rationale'>> & { rationale: string | undefined } {
  if (typeof input !== 'object' || input === null) bad('input', 'want an object')
  const { rationale, metadata = {} } = input
  if (rationale !== undefined && typeof rationale !== 'string') bad('rationale', 'want a string')
  if (typeof metadata !== 'object' || metadata === null || Object.values(metadata).some(v => typeof v !== 'string')) bad('metadata', 'want an object of strings')
  return { traceId: checkTraceId(input.traceId), name: checkName(input.name), value: checkValue(input.value), rationale, metadata }
}

function checkValue (value: unknown): FeedbackValue {
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return value
    case 'number':
      if (Number.isFinite(value)) return value
      return bad('value', 'want a finite number')
    case 'object':
      if (value !== null && !Array.isArray(value) && [Object.prototype, null].includes(Object.getPrototypeOf(value))) {
        try {
          // Round-tripped: what the server will store, and a cycle or BigInt fails here, not there.
          return JSON.parse(JSON.stringify(value)) as FeedbackValue
        } catch (err) {
          return bad('value', `not JSON: ${(err as Error).message}`)
        }
      }
  }
  return bad('value', 'want a boolean, number, string or plain object')
}

function bad (field: string, why: string): never {
  throw new FST_MLFLOW_INVALID_FEEDBACK(field, why)
}
