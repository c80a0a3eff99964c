import type { SerializedTrace, TraceSink } from '../plugin'
import { OtlpBatcher } from '../plugin/export/otlp-batcher'

/**
 * Does a real export's serialization, without I/O: the TraceInfo's JSON (StartTraceV3's body) and
 * the spans as OTLP/protobuf, batched as the default path batches them, or as the traces.json
 * document (the artifact path). The byte count keeps the work observable.
 */
export class SerializingSink implements TraceSink {
  bytes = 0
  private readonly batcher = new OtlpBatcher(async body => { this.bytes += body.length })

  constructor (private readonly spans: 'otlp' | 'artifact') {}

  async export (trace: SerializedTrace, signal: AbortSignal): Promise<void> {
    this.bytes += JSON.stringify(trace.info).length
    if (this.spans === 'otlp') await this.batcher.add(trace.record, signal)
    else this.bytes += trace.spansJson.length
  }
}
