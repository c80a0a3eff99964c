import { FST_MLFLOW_TRACE_FINALIZED } from '../errors'
import { mlflowTraceId } from './ids'
import { keepTraceInfoOnRoot } from './joined-root'
import { entriesSize, jsonSize } from './size'
import type { MlflowSpan } from './span'

// What the serialized trace spends around the values: ids, times, field names, status.
const TRACE_OVERHEAD = 256
const SPAN_OVERHEAD = 320
const EVENT_OVERHEAD = 64

/** One object for every trace without shared metadata: serialization caches its work per object. */
const NO_SHARED_METADATA: Readonly<Record<string, string>> = Object.freeze({})

/**
 * Trace-level state, held apart from the active span so that user, session, tags and the request
 * id can be set from anywhere that has the trace (MLflow's TS SDK loses them outside `withSpan`).
 */
export class TraceRecord {
  readonly id: string
  readonly spans: MlflowSpan[] = []
  readonly metadata: Record<string, string> = {}
  /**
   * Metadata every trace of the process shares (deployment), below `metadata`; not copied per trace.
   * Set it to an object that no longer changes: serialization limits each such object only once.
   */
  sharedMetadata: Readonly<Record<string, string>> = NO_SHARED_METADATA
  readonly tags: Record<string, string> = {}
  clientRequestId: string | undefined
  requestPreview: string | undefined
  responsePreview: string | undefined
  finalized = false
  /**
   * Roughly what the trace weighs serialized, in bytes, weighed once when it ends: the export
   * queue's byte bound counts it without serializing. Shared metadata is left out: no trace holds a copy.
   */
  bytes = 0

  /**
   * @param traceIdHex the MLflow trace's own id, unique per trace
   * @param otelTraceId the W3C trace its spans report to OTel (a caller's, under a traceparent)
   * @param joined the trace is the caller's MLflow trace (distributedTracing 'join'): the root's
   *   `parentSpanId` is the caller's span, and the caller owns the TraceInfo, so only spans are sent
   */
  constructor (
    readonly traceIdHex: string,
    private readonly onEnd: (trace: TraceRecord) => void,
    readonly otelTraceId: string = traceIdHex,
    readonly joined: boolean = false
  ) {
    this.id = mlflowTraceId(traceIdHex)
  }

  /** The first span of the trace: the one with no parent in this process. */
  get root (): MlflowSpan {
    return this.spans[0]
  }

  setMetadata (metadata: Record<string, string>): void {
    this.assertOpen()
    Object.assign(this.metadata, metadata)
  }

  setTags (tags: Record<string, string>): void {
    this.assertOpen()
    Object.assign(this.tags, tags)
  }

  spanEnded (span: MlflowSpan): void {
    if (span !== this.root || this.finalized) return
    // Children still open when the root ends are closed with it, so that nothing is lost.
    for (const child of this.spans) if (!child.ended) child.close(span.endNs)
    this.finalized = true
    if (this.joined) keepTraceInfoOnRoot(this)
    this.bytes = this.weigh()
    this.onEnd(this)
  }

  private weigh (): number {
    let bytes = TRACE_OVERHEAD + entriesSize(this.metadata) + entriesSize(this.tags) +
      jsonSize(this.clientRequestId) + jsonSize(this.requestPreview) + jsonSize(this.responsePreview)
    for (const span of this.spans) {
      bytes += SPAN_OVERHEAD + jsonSize(span.name) + jsonSize(span.status.message) + entriesSize(span.attributes)
      for (const event of span.events) bytes += EVENT_OVERHEAD + jsonSize(event.name) + jsonSize(event.attributes)
    }
    return bytes
  }

  private assertOpen (): void {
    if (this.finalized) throw new FST_MLFLOW_TRACE_FINALIZED(this.id)
  }
}
