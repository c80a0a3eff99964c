/**
 * A hand-written fake of the few MLflow (and Databricks) endpoints the exporter calls, for fault
 * injection only. Round-trip behaviour is tested against a real MLflow server elsewhere.
 */
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from '../../plugin/export/logger'

export interface FakeResponse {
  status?: number
  headers?: Record<string, string>
  /** A string is sent as is; anything else as JSON. */
  body?: unknown
}

/** 'hang' never answers; 'reset' destroys the socket without an answer. */
export type Fault = FakeResponse | 'hang' | 'reset'

export interface RecordedRequest {
  method: string
  /** Path and query, as received. */
  url: string
  /** Path without the query. */
  path: string
  query: URLSearchParams
  headers: Record<string, string | string[] | undefined>
  body: string
  /** The body's bytes (OTLP requests are protobuf). */
  raw: Buffer
  /** Date.now() when the request was complete. */
  at: number
}

export type RouteHandler = (req: RecordedRequest) => FakeResponse | Promise<FakeResponse>

interface Route { method: string, path: string, handler: RouteHandler }

/** `path` matches exactly, or as a prefix when it ends with `*`. */
function matches (pattern: string, path: string): boolean {
  return pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern
}

export class FakeServer {
  readonly requests: RecordedRequest[] = []
  private readonly faults: Array<{ method: string, path: string, queue: Fault[] }> = []
  private readonly routes: Route[] = []
  private readonly hanging = new Set<ServerResponse>()

  private constructor (private readonly server: Server, readonly port: number) {}

  /** `port`: listen where an earlier fake did, as a restarted server would. */
  static async start (port = 0): Promise<FakeServer> {
    let fake: FakeServer | undefined
    const server = createServer((req, res) => { void fake?.handle(req, res) })
    server.listen(port, '127.0.0.1')
    await once(server, 'listening')
    fake = new FakeServer(server, (server.address() as AddressInfo).port)
    return fake
  }

  get url (): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** The next requests to `method path` get these answers, in order, before the normal ones. */
  fail (method: string, path: string, ...faults: Fault[]): this {
    this.faults.push({ method, path, queue: faults })
    return this
  }

  /** Adds or overrides an endpoint (routes added later win). */
  route (method: string, path: string, handler: RouteHandler): this {
    this.routes.unshift({ method, path, handler })
    return this
  }

  /** Answers as a server with a span store does: `/v1/traces` takes spans, and StartTraceV3 says they are stored. */
  withOtlp (version = '3.17.2'): this {
    this.route('GET', '/version', () => ({ body: version, headers: { 'content-type': 'text/plain' } }))
    this.route('POST', '/v1/traces', () => ({ body: '', headers: { 'content-type': 'application/x-protobuf' } }))
    return this.route('POST', '/api/3.0/mlflow/traces', req => {
      const answer = defaultAnswer(req) as { body: { trace: { trace_info: { tags: Record<string, string> } } } }
      answer.body.trace.trace_info.tags['mlflow.trace.spansLocation'] = 'TRACKING_STORE'
      return answer
    })
  }

  /** Requests received to `method path` (same matching as routes). */
  received (method: string, path: string): RecordedRequest[] {
    return this.requests.filter(r => r.method === method && matches(path, r.path))
  }

  async close (): Promise<void> {
    for (const res of this.hanging) res.destroy()
    this.hanging.clear()
    this.server.closeAllConnections()
    await new Promise(resolve => this.server.close(resolve))
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const url = new URL(req.url ?? '/', 'http://fake')
    const recorded: RecordedRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      path: url.pathname,
      query: url.searchParams,
      headers: { ...req.headers },
      body: Buffer.concat(chunks).toString('utf8'),
      raw: Buffer.concat(chunks),
      at: Date.now()
    }
    this.requests.push(recorded)

    const scripted = this.faults.find(f => f.method === recorded.method && matches(f.path, recorded.path) && f.queue.length > 0)
    const fault = scripted?.queue.shift()
    if (fault === 'hang') {
      this.hanging.add(res)
      return
    }
    if (fault === 'reset') {
      req.socket.destroy()
      return
    }
    let answer: FakeResponse
    if (fault !== undefined) {
      answer = fault
    } else {
      const route = this.routes.find(r => r.method === recorded.method && matches(r.path, recorded.path))
      answer = route !== undefined ? await route.handler(recorded) : defaultAnswer(recorded)
    }
    const body = answer.body === undefined ? '' : typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body)
    res.writeHead(answer.status ?? 200, { 'content-type': 'application/json', ...answer.headers })
    res.end(body)
  }
}

/**
 * The happy path of the calls an OSS export makes, as a server without OTLP span ingest (3.3)
 * answers them: spans go as the traces.json artifact. `withOtlp()` makes it a newer one.
 */
export function defaultAnswer (req: RecordedRequest): FakeResponse {
  if (req.method === 'GET' && req.path === '/version') return { body: '3.3.0', headers: { 'content-type': 'text/plain' } }
  if (req.method === 'GET' && req.path === '/api/2.0/mlflow/experiments/get') {
    const id = req.query.get('experiment_id') ?? '1'
    return { body: { experiment: { experiment_id: id, name: 'x', lifecycle_stage: 'active', artifact_location: `mlflow-artifacts:/${id}` } } }
  }
  if (req.method === 'POST' && req.path === '/api/3.0/mlflow/traces') {
    const info = (JSON.parse(req.body) as { trace: { trace_info: Record<string, unknown> & { trace_id: string, tags?: Record<string, string>, trace_location?: { mlflow_experiment?: { experiment_id?: string } } } } }).trace.trace_info
    const experimentId = info.trace_location?.mlflow_experiment?.experiment_id ?? '1'
    return {
      body: {
        trace: {
          trace_info: {
            ...info,
            tags: { ...info.tags, 'mlflow.artifactLocation': `mlflow-artifacts:/${experimentId}/traces/${info.trace_id}/artifacts` }
          }
        }
      }
    }
  }
  if (req.method === 'PUT' && req.path.startsWith('/api/2.0/mlflow-artifacts/artifacts/')) return { body: {} }
  return { status: 404, body: { error_code: 'ENDPOINT_NOT_FOUND', message: `fake server: no ${req.method} ${req.path}` } }
}

export interface LogCall { obj: Record<string, unknown>, msg: string | undefined }

/** A logger that keeps every call, for assertions. */
export function recordingLogger (): Logger & { calls: { info: LogCall[], warn: LogCall[], error: LogCall[] } } {
  const calls = { info: [] as LogCall[], warn: [] as LogCall[], error: [] as LogCall[] }
  return {
    calls,
    info: (obj, msg) => { calls.info.push({ obj: obj as Record<string, unknown>, msg }) },
    warn: (obj, msg) => { calls.warn.push({ obj: obj as Record<string, unknown>, msg }) },
    error: (obj, msg) => { calls.error.push({ obj: obj as Record<string, unknown>, msg }) }
  }
}

/** A port nothing listens on: opened, then closed. */
export async function closedPort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  await new Promise(resolve => server.close(resolve))
  return port
}
