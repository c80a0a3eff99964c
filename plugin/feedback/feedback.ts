import { FST_MLFLOW_FEEDBACK_UNDELIVERED, FST_MLFLOW_INVALID_OPTION, FST_MLFLOW_NO_TRUSTED_USER, FST_MLFLOW_NOT_TRACE_USER, FST_MLFLOW_TRACE_NOT_FOUND } from '../errors'
import type { BackoffOptions } from '../export/backoff'
import type { AssessmentJson } from '../export/client'
import { AGAIN, untilDeadline, type Deadline } from './deadline'
import { checkInput, checkName, checkTraceId, type FeedbackInput } from './input'
import type { PendingTraces } from './pending-traces'
import type { FeedbackStore, FeedbackTarget } from './store'

export interface FeedbackOptions {
  /** Take feedback from a request without a trusted user (source id `anonymous`, never merged). Default false. */
  allowAnonymous?: boolean
  /** Take feedback on traces of other users (e.g. a reviewer's). Default false: only the trace's own user. */
  allowOtherUsers?: boolean
  /** The caller's deadline for the whole call, waiting for the trace's export and retries included. Default 10 s. */
  timeoutMs?: number
}

export interface FeedbackResult {
  assessmentId: string
  traceId: string
  name: string
  /** False when this user's earlier feedback of that name was updated instead. */
  created: boolean
}

const ANONYMOUS = 'anonymous'
const DEFAULT_TIMEOUT_MS = 10_000
/** Short first pauses: waiting for a trace that is being exported, not for a struggling server. */
const RETRY: BackoffOptions = { initialBackoffMs: 100, maxBackoffMs: 2000 }

/**
 * End-user feedback as MLflow assessments with a HUMAN source: one per user, trace and name, on the
 * trace's own user's traces only (by default). Framework-neutral: callers pass the user they
 * resolved for the feedback request through the tracing plugin's trust-aware chain.
 */
export class TraceFeedback {
  /** One call at a time per (user, trace, name) in this process, so two quick ratings cannot both create. */
  private readonly running = new Map<string, Promise<unknown>>()

  constructor (private readonly store: FeedbackStore | undefined, private readonly pending: PendingTraces) {}

  /** Stores the feedback, or updates this user's earlier one of the same name; resolves with its assessment id. */
  async record (user: string | undefined, input: FeedbackInput, options: FeedbackOptions = {}): Promise<FeedbackResult> {
    const { traceId, name, value, rationale, metadata } = checkInput(input)
    const source = { source_type: 'HUMAN', source_id: sourceId(user, options) }
    const assessment: AssessmentJson = { assessment_name: name, source, feedback: { value }, rationale, metadata }
    const deadline = deadlineOf(options)
    return await this.serialized(`${source.source_id}\n${traceId}\n${name}`, async () =>
      await this.attempts(traceId, user, options, deadline, async (store, target, signal) => {
        const mine = user === undefined ? undefined : own(target, user, name)
        const stored = mine === undefined
          ? await store.create(traceId, assessment, signal)
          : await store.update(traceId, mine.assessment_id as string, assessment, signal)
        return { assessmentId: stored.assessment_id as string, traceId, name, created: mine === undefined }
      }))
  }

  /** Deletes this user's feedback of that name on the trace; resolves false if there was none. */
  async remove (user: string | undefined, input: { traceId: string, name?: string }, options: FeedbackOptions = {}): Promise<boolean> {
    const traceId = checkTraceId(input?.traceId)
    const name = checkName(input.name)
    // Anonymous feedback is never merged, so there is no "own" one to delete.
    if (user === undefined) throw new FST_MLFLOW_NO_TRUSTED_USER()
    const deadline = deadlineOf(options)
    return await this.serialized(`${user}\n${traceId}\n${name}`, async () =>
      await this.attempts(traceId, user, options, deadline, async (store, target, signal) => {
        const mine = own(target, user, name)
        if (mine === undefined) return false
        await store.remove(traceId, mine.assessment_id as string, signal)
        return true
      }))
  }

  /**
   * Finds the trace (waiting while this process has ended it but not exported it yet), checks its
   * user, then runs `write`; all of it again on a retryable failure, so that a write that reached
   * the server before failing is found, not repeated.
   */
  private async attempts<T> (traceId: string, user: string | undefined, options: FeedbackOptions, deadline: Deadline, write: (store: FeedbackStore, target: FeedbackTarget, signal: AbortSignal) => Promise<T>): Promise<T> {
    const store = this.store
    if (store === undefined) throw new FST_MLFLOW_FEEDBACK_UNDELIVERED(traceId, 'a custom sink stores no feedback')
    return await untilDeadline(traceId, deadline, RETRY, 'the trace is not exported yet', async signal => {
      if (this.pending.has(traceId)) return AGAIN
      const target = await store.target(traceId, signal)
      if (target === undefined) throw new FST_MLFLOW_TRACE_NOT_FOUND(traceId)
      // A trace without a user belongs to nobody: only anonymous feedback matches it.
      if (options.allowOtherUsers !== true && target.user !== user) throw new FST_MLFLOW_NOT_TRACE_USER(traceId)
      return await write(store, target, signal)
    })
  }

  private async serialized<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.running.get(key) ?? Promise.resolve()
    const run = before.then(fn, fn)
    const settled = run.then(() => {}, () => {})
    this.running.set(key, settled)
    void settled.then(() => { if (this.running.get(key) === settled) this.running.delete(key) })
    return await run
  }
}

function sourceId (user: string | undefined, options: FeedbackOptions): string {
  if (user !== undefined) return user
  if (options.allowAnonymous === true) return ANONYMOUS
  throw new FST_MLFLOW_NO_TRUSTED_USER()
}

/** This user's live feedback of that name on the trace. */
function own (target: FeedbackTarget, user: string, name: string): AssessmentJson | undefined {
  return target.assessments.find(a => a.assessment_name === name && a.feedback !== undefined && a.valid !== false &&
    a.source.source_type === 'HUMAN' && a.source.source_id === user)
}

/** Taken when the call starts: time spent waiting behind an earlier call of the same key counts. */
function deadlineOf (options: FeedbackOptions): Deadline {
  const { timeoutMs = DEFAULT_TIMEOUT_MS } = options
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new FST_MLFLOW_INVALID_OPTION('timeoutMs', `want a positive number of milliseconds, got ${String(timeoutMs)}`)
  return { timeoutMs, at: Date.now() + timeoutMs }
}
