/** MLflow span types (`mlflow.spanType`); MLflow also accepts custom strings. */
export const SpanType = {
  LLM: 'LLM',
  CHAT_MODEL: 'CHAT_MODEL',
  CHAIN: 'CHAIN',
  AGENT: 'AGENT',
  TOOL: 'TOOL',
  RETRIEVER: 'RETRIEVER',
  PARSER: 'PARSER',
  EMBEDDING: 'EMBEDDING',
  RERANKER: 'RERANKER',
  MEMORY: 'MEMORY',
  UNKNOWN: 'UNKNOWN'
} as const
export type SpanType = typeof SpanType[keyof typeof SpanType] | (string & {})

export const SpanAttribute = {
  TRACE_ID: 'mlflow.traceRequestId',
  TYPE: 'mlflow.spanType',
  INPUTS: 'mlflow.spanInputs',
  OUTPUTS: 'mlflow.spanOutputs',
  TOKEN_USAGE: 'mlflow.chat.tokenUsage',
  LLM_MODEL: 'mlflow.llm.model',
  LLM_PROVIDER: 'mlflow.llm.provider',
  /** Where MLflow's span ingest finds the trace's user and session (OTel semantic conventions). */
  USER_ID: 'user.id',
  SESSION_ID: 'session.id',
  /** A joined trace's root carries what TraceInfo would have (see joined-root.ts). */
  CLIENT_REQUEST_ID: 'client_request_id',
  /** Root-span attributes MLflow's span ingest turns into trace tags (on a root without parent). */
  TRACE_TAG_PREFIX: 'mlflow.traceTag.'
} as const

export const TraceMetadata = {
  SCHEMA_VERSION: 'mlflow.trace_schema.version',
  USER: 'mlflow.trace.user',
  SESSION: 'mlflow.trace.session',
  TOKEN_USAGE: 'mlflow.trace.tokenUsage',
  /** Trace and span sizes, JSON: MLflow reads `num_spans` to know when every span has arrived. */
  SIZE_STATS: 'mlflow.trace.sizeStats',
  /** The trace's size alone, kept by MLflow for older readers. */
  SIZE_BYTES: 'mlflow.trace.sizeBytes',
  SOURCE_NAME: 'mlflow.source.name',
  SOURCE_TYPE: 'mlflow.source.type',
  GIT_COMMIT: 'mlflow.source.git.commit',
  GIT_BRANCH: 'mlflow.source.git.branch',
  GIT_REPO_URL: 'mlflow.source.git.repoURL',
  MODEL_ID: 'mlflow.modelId',
  /** The caller's W3C trace and span, when the request came with a `traceparent`. */
  PARENT_TRACE_ID: 'w3c.parent_trace_id',
  PARENT_SPAN_ID: 'w3c.parent_span_id'
} as const

export const TraceTag = {
  NAME: 'mlflow.traceName',
  ARTIFACT_LOCATION: 'mlflow.artifactLocation',
  SPANS_LOCATION: 'mlflow.trace.spansLocation'
} as const

/**
 * Lengths MLflow guarantees to keep (mlflow/tracing/constant.py). A 3.17.2 server stores longer
 * metadata and tag values as sent (round trip), but other stores may not, so we truncate.
 */
export const Limits = {
  KEY: 250,
  METADATA_VALUE: 250,
  TAG_VALUE: 4096,
  PREVIEW: 1000
} as const

export const TRACE_SCHEMA_VERSION = '3'
