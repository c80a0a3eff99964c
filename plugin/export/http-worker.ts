// The export's HTTP thread (see http.ts): runs each exchange it is sent and posts the outcome back.
import { parentPort } from 'node:worker_threads'
import { MlflowHttpError } from './http-error'
import { exchangeHere } from './http-exchange'
import type { ExchangeAnswer, ExchangeMessage } from './http'

const port = parentPort
if (port === null) throw new Error('http-worker runs as a worker thread')
/** One controller per signal of the app's thread that an exchange named. */
const signals = new Map<number, AbortController>()

/** Answers ready in one event-loop turn, sent back as one message. */
let outbox: ExchangeAnswer[] = []

function answer (a: ExchangeAnswer): void {
  if (outbox.push(a) === 1) setImmediate(flush)
}

function flush (): void {
  const batch = outbox
  outbox = []
  port?.postMessage(batch)
}

port.on('message', (batch: ExchangeMessage[]) => { for (const message of batch) run(message) })

function run (message: ExchangeMessage): void {
  if (message.abort !== undefined) {
    signals.get(message.abort)?.abort()
    return
  }
  const { id, request, signal } = message
  let controller: AbortController | undefined
  if (signal !== undefined) {
    controller = signals.get(signal)
    if (controller === undefined) signals.set(signal, controller = new AbortController())
  }
  exchangeHere({ ...request, signal: controller?.signal }).then(res => answer({ id, status: res.status, text: res.text }), (err: unknown) => {
    const e = err instanceof MlflowHttpError ? err : new MlflowHttpError(String(err), 0, 'NETWORK')
    answer({ id, error: { message: e.message, status: e.status, errorCode: e.errorCode, retryAfterMs: e.retryAfterMs } })
  })
}
