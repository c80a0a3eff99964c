import { extname, join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { MlflowHttpError } from './http-error'
import { EventLoopLoad } from './event-loop-load'
import { exchangeHere, redactQuery, type HttpRequest, type HttpResponse } from './http-exchange'

export { MlflowHttpError } from './http-error'
export type { HttpRequest, HttpResponse } from './http-exchange'

/** What the worker is sent, in batches: an exchange to run (with the id of its signal), or a signal that aborted. */
export type ExchangeMessage =
  | { id: number, request: Omit<HttpRequest, 'signal'>, signal?: number, abort?: undefined }
  | { abort: number }
/** What it answers, once per exchange, in batches. */
export type ExchangeAnswer =
  | { id: number, status: number, text: string, error?: undefined }
  | { id: number, error: { message: string, status: number, errorCode: string, retryAfterMs?: number } }

interface Pending {
  resolve: (res: HttpResponse) => void
  reject: (err: MlflowHttpError) => void
}

/**
 * A worker thread that runs calls to the tracking server and holds their keep-alive connections.
 * An HTTP call costs 60-100 µs of CPU (the socket's syscalls, header writing, response parsing),
 * and at thousands of traces a second that would be the request thread's busiest work, each
 * request of the app queueing behind it. A message costs about as much as a call's own work here
 * (waking the other thread is a syscall), so the calls of one event-loop turn go in one message,
 * and their answers come back the same way. The worker keeps the process alive only while calls
 * are in flight, as sockets would; one that dies fails its calls as a network error would, and the
 * next call starts another.
 */
class HttpThread {
  private worker: Worker | undefined
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private readonly signalIds = new WeakMap<AbortSignal, number>()
  private outbox: ExchangeMessage[] = []

  request (req: HttpRequest): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      const { signal, ...request } = req
      if (signal?.aborted === true) return reject(new MlflowHttpError(`${req.method} ${redactQuery(req.url)}: aborted`, 0, 'ABORTED'))
      const worker = this.worker ?? this.start()
      const id = this.nextId++
      if (this.pending.size === 0) worker.ref()
      this.pending.set(id, { resolve, reject })
      this.post({ id, request, signal: signal === undefined ? undefined : this.signalId(signal) })
    })
  }

  /** A signal is named once, with one listener, however many calls share it. */
  private signalId (signal: AbortSignal): number {
    let id = this.signalIds.get(signal)
    if (id === undefined) {
      const named = id = this.nextId++
      this.signalIds.set(signal, named)
      signal.addEventListener('abort', () => this.post({ abort: named }), { once: true })
    }
    return id
  }

  private post (message: ExchangeMessage): void {
    if (this.outbox.push(message) === 1) setImmediate(this.flush)
  }

  private readonly flush = (): void => {
    const batch = this.outbox
    this.outbox = []
    this.worker?.postMessage(batch)
  }

  private start (): Worker {
    // Compiled, the worker is a .js file beside this one; under a TypeScript loader (the tests) a
    // .ts file that needs the loader's flags. An app's own preloads (an APM agent) stay out of it.
    const ext = extname(__filename)
    const worker = new Worker(join(__dirname, 'http-worker' + ext), { execArgv: ext === '.ts' ? process.execArgv : [] })
    worker.unref()
    worker.on('message', (answers: ExchangeAnswer[]) => { for (const a of answers) this.answered(a) })
    worker.on('error', () => {})
    worker.on('exit', () => this.stopped(worker))
    this.worker = worker
    return worker
  }

  private answered (a: ExchangeAnswer): void {
    const pending = this.pending.get(a.id)
    if (pending === undefined) return
    this.settle(a.id)
    if (a.error === undefined) pending.resolve({ status: a.status, text: a.text })
    else pending.reject(new MlflowHttpError(a.error.message, a.error.status, a.error.errorCode, a.error.retryAfterMs))
  }

  private stopped (worker: Worker): void {
    if (this.worker !== worker) return
    this.worker = undefined
    for (const [id, pending] of this.pending) {
      this.settle(id)
      pending.reject(new MlflowHttpError('the export\'s HTTP worker stopped', 0, 'NETWORK'))
    }
  }

  private settle (id: number): void {
    this.pending.delete(id)
    if (this.pending.size === 0) this.worker?.unref()
  }
}

const thread = new HttpThread()
const load = new EventLoopLoad()

/** Where calls run: on the request thread's own connections, on the worker, or (the default) as the load says. */
export type CallThread = 'auto' | 'here' | 'worker'
let callThread: CallThread = 'auto'

/** For tests: every call on one side. */
export function runCallsOn (where: CallThread): void {
  callThread = where
}

/**
 * One HTTP exchange with a deadline; any failure becomes an MlflowHttpError. It runs on the
 * worker only while the request thread is busy: on an idle one a call's messages and the worker's
 * own wake-ups cost more CPU in all than the call does here (measured: 2000 traces/s took about
 * 20 % of a core more on the worker, for 6-13 % less on the request thread).
 */
export async function httpRequest (req: HttpRequest): Promise<HttpResponse> {
  const onWorker = callThread === 'auto' ? load.isBusy() : callThread === 'worker'
  return onWorker ? await thread.request(req) : await exchangeHere(req)
}
