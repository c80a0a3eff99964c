import type { SerializedTrace } from '../trace/serialize'
import type { TraceSink } from './queue'

/** Keeps serialized traces in memory: for tests and for measuring serialization without I/O. */
export class MemorySink implements TraceSink {
  readonly traces: SerializedTrace[] = []

  constructor (private readonly keep = true) {}

  async export (trace: SerializedTrace): Promise<void> {
    if (this.keep) this.traces.push(trace)
  }
}
