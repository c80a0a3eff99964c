import createError from '@fastify/error'

/** Bad configuration found at start-up: names the option or environment variable at fault. */
export const FST_MLFLOW_INVALID_OPTION = createError<'FST_MLFLOW_INVALID_OPTION', [string, string]>(
  'FST_MLFLOW_INVALID_OPTION', 'Invalid option %s: %s', 500, TypeError)

/** The tracking server answered that the configuration cannot work (bad credentials, unknown experiment). */
export const FST_MLFLOW_SERVER_REJECTED = createError<'FST_MLFLOW_SERVER_REJECTED', [string, string]>(
  'FST_MLFLOW_SERVER_REJECTED', 'MLflow server rejected %s: %s', 500)

/** Trace metadata is immutable once the trace is finalized. */
export const FST_MLFLOW_TRACE_FINALIZED = createError<'FST_MLFLOW_TRACE_FINALIZED', [string]>(
  'FST_MLFLOW_TRACE_FINALIZED', 'Trace %s is finalized; its metadata can no longer change', 500)

/** The tracking server is older than the first MLflow version with the calls this client needs. */
export const FST_MLFLOW_UNSUPPORTED_SERVER = createError<'FST_MLFLOW_UNSUPPORTED_SERVER', [string, string]>(
  'FST_MLFLOW_UNSUPPORTED_SERVER', 'MLflow server %s is not supported: tracing needs MLflow %s or newer (upgrade the tracking server)', 500)

/** Feedback input that cannot be stored: names the field at fault. */
export const FST_MLFLOW_INVALID_FEEDBACK = createError<'FST_MLFLOW_INVALID_FEEDBACK', [string, string]>(
  'FST_MLFLOW_INVALID_FEEDBACK', 'Invalid feedback %s: %s', 400)

/** Feedback names a trace the destination does not have (and this process is not still exporting). */
export const FST_MLFLOW_TRACE_NOT_FOUND = createError<'FST_MLFLOW_TRACE_NOT_FOUND', [string]>(
  'FST_MLFLOW_TRACE_NOT_FOUND', 'Trace %s not found', 404)

/** Feedback on a trace of another user: only the trace's own user may rate it, by default. */
export const FST_MLFLOW_NOT_TRACE_USER = createError<'FST_MLFLOW_NOT_TRACE_USER', [string]>(
  'FST_MLFLOW_NOT_TRACE_USER', 'Trace %s belongs to another user', 403)

/** Feedback from a request without a trusted user, where anonymous feedback is not allowed. */
export const FST_MLFLOW_NO_TRUSTED_USER = createError<'FST_MLFLOW_NO_TRUSTED_USER', []>(
  'FST_MLFLOW_NO_TRUSTED_USER', 'Feedback needs a trusted user (set allowAnonymous to take it without one)', 401)

/** Feedback not stored within its deadline: the server kept failing, or the trace was not exported in time. */
export const FST_MLFLOW_FEEDBACK_UNDELIVERED = createError<'FST_MLFLOW_FEEDBACK_UNDELIVERED', [string, string]>(
  'FST_MLFLOW_FEEDBACK_UNDELIVERED', 'Feedback on trace %s not stored: %s', 503)
