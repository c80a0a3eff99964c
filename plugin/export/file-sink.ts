import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs'
import { dirname } from 'node:path'
import type { SerializedTrace } from '../trace/serialize'
import type { TraceSink } from './queue'

/** Everything `trace_location` needs when no experiment exists: MLflow's default experiment. */
const LOCAL_LOCATION = { type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: '0' } }

/**
 * The embedded default: one trace per line in MLflow's trace JSON shape, `{info, data: {spans}}`,
 * which `mlflow.entities.Trace.from_json` reads.
 */
export class FileSink implements TraceSink {
  private stream: WriteStream | undefined

  constructor (readonly path: string) {}

  async export (trace: SerializedTrace): Promise<void> {
    const info = JSON.stringify({ ...trace.info, trace_location: LOCAL_LOCATION })
    const line = '{"info":' + info + ',"data":' + trace.spansJson + '}\n'
    const stream = this.open()
    await new Promise<void>((resolve, reject) => stream.write(line, err => err == null ? resolve() : reject(err)))
  }

  async close (): Promise<void> {
    const stream = this.stream
    this.stream = undefined
    if (stream !== undefined) await new Promise<void>(resolve => stream.end(resolve))
  }

  private open (): WriteStream {
    if (this.stream === undefined) {
      mkdirSync(dirname(this.path), { recursive: true })
      this.stream = createWriteStream(this.path, { flags: 'a' })
    }
    return this.stream
  }
}
