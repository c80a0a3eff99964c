// The export's thread (see pipeline-thread.ts): the tracking server's queue, sink and spool.
import { parentPort, workerData } from 'node:worker_threads'
import { safeJson } from '../trace/json'
import { resolveDestination } from './config'
import type { Logger } from './logger'
import { mlflowPipeline, type MlflowDestination } from './pipeline'
import type { FromPipeline, PipelineAnswer, PipelineCall, PipelineWorkerData, ToPipeline } from './pipeline-thread'
import { decodeTrace } from './spool/codec'
import { resolveSpool } from './spool/options'
import { errorShape } from './thread-error'

/**
 * How often the request thread hears how the export goes, when it changed: its stats() and the
 * feedback waiting on traces are this far behind at most. A call's answer goes at once.
 */
const REPORT_MS = 50

const port = parentPort
if (port === null) throw new Error('pipeline-worker runs as a worker thread')
const { options, env } = workerData as PipelineWorkerData

const logger: Logger = { info: relay('info'), warn: relay('warn'), error: relay('error') }
let settled: string[] = []
let answers: PipelineAnswer[] = []
let received = 0
let undecodable = 0
let lastReport = ''
let reportSoon = false

// resolveDestination ran on the request thread first: what reaches here is valid.
const pipeline = mlflowPipeline(resolveDestination(options, env) as MlflowDestination, resolveSpool(options.spool, env), {
  queue: options.queue, logger, settle: id => settled.push(id)
})

port.on('message', (message: ToPipeline) => {
  if (message.lines !== '') for (const line of message.lines.split('\n')) take(line)
  for (const call of message.calls) run(call)
})
setInterval(report, REPORT_MS)

function take (line: string): void {
  received++
  try {
    pipeline.push(decodeTrace(line))
  } catch {
    undecodable++
  }
}

function run (call: PipelineCall): void {
  invoke(call).then(value => answer({ id: call.id, value }), (err: unknown) => answer({ id: call.id, error: errorShape(err) }))
}

async function invoke ({ op, timeoutMs }: PipelineCall): Promise<unknown> {
  switch (op) {
    case 'start': return await pipeline.start()
    case 'experimentId': return await pipeline.experimentId()
    case 'flush': return await pipeline.flush(timeoutMs)
    case 'shutdown': return await pipeline.shutdown(timeoutMs)
  }
}

function answer (a: PipelineAnswer): void {
  answers.push(a)
  if (reportSoon) return
  reportSoon = true
  setImmediate(report)
}

function report (): void {
  reportSoon = false
  const stats = pipeline.stats()
  stats.dropped.serialization_error += undecodable
  const state = safeJson([received, stats, pipeline.canJoin])
  if (state === lastReport && settled.length === 0 && answers.length === 0) return
  lastReport = state
  post({ report: { received, settled, stats, canJoin: pipeline.canJoin, answers } })
  settled = []
  answers = []
}

function relay (level: 'info' | 'warn' | 'error'): Logger['info'] {
  return (obj, msg) => {
    try {
      post({ log: level, obj, msg })
    } catch {
      // What structured clone cannot copy (a function, a socket) goes as its JSON.
      post({ log: level, obj: JSON.parse(safeJson(obj)) as object, msg })
    }
  }
}

function post (message: FromPipeline): void {
  port?.postMessage(message)
}
