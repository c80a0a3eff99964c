import { encodeOtlpSpans } from '../trace/otlp'
import type { TraceRecord } from '../trace/trace-record'
import { MlflowHttpError } from './http'

/** Sends one OTLP request for a batch of traces. */
export type SendSpans = (body: Uint8Array, signal: AbortSignal) => Promise<void>

interface Waiting {
  record: TraceRecord
  signal: AbortSignal
  resolve: () => void
  reject: (err: unknown) => void
}

/** Traces per OTLP request at most: a batch is one database transaction on the server. */
const MAX_BATCH = 64
/**
 * How long the first trace of a batch waits for others. Under a steady load few traces end in one
 * turn of the event loop (2-3 at 2000 req/s), and each OTLP request costs both ends more than
 * encoding a trace does. From MLflow 3.7 StartTraceV3 goes meanwhile; before, where it waits for
 * the spans, an export takes up to this much longer. Either way the adaptive limit sees the longer
 * exports and allows more in flight (about 30 rather than 11 at 2000 req/s into an instant backend).
 */
const BATCH_WAIT_MS = 10

/**
 * Spans of the traces exported within BATCH_WAIT_MS share one OTLP request. The server stores a
 * request all or nothing, so when a batch is refused for a reason that is not transient (a 4xx, a
 * trace that cannot be encoded), each trace is sent again on its own: only the bad one fails. A
 * transient failure fails the whole batch; each trace is then retried as usual.
 */
export class OtlpBatcher {
  private waiting: Waiting[] = []
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly send: SendSpans) {}

  add (record: TraceRecord, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.waiting.push({ record, signal, resolve, reject }) === 1) this.timer = setTimeout(this.flushWaiting, BATCH_WAIT_MS)
      else if (this.waiting.length >= MAX_BATCH) this.flushWaiting()
    })
  }

  private readonly flushWaiting = (): void => {
    clearTimeout(this.timer)
    if (this.waiting.length === 0) return
    const batch = this.waiting
    this.waiting = []
    this.sendBatch(batch)
  }

  private sendBatch (batch: Waiting[]): void {
    let sent: Promise<void>
    try {
      sent = this.send(encodeOtlpSpans(batch.map(w => w.record)), batch[0].signal)
    } catch (err) {
      sent = Promise.reject(err)
    }
    sent.then(() => {
      for (const w of batch) w.resolve()
    }, (err: unknown) => {
      if (batch.length > 1 && !isTransient(err)) for (const w of batch) this.sendBatch([w])
      else for (const w of batch) w.reject(err)
    })
  }
}

function isTransient (err: unknown): boolean {
  return err instanceof MlflowHttpError && (err.retryable || err.errorCode === 'ABORTED')
}
