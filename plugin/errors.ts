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
