// The adapter table: the suites that must hold for the Fastify plugin and the Express middleware
// alike build their app through one of these, with routes written once in a neutral form.
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import express, { type NextFunction, type Request, type Response } from 'express'
import express4 from 'express4'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import type { Test } from 'tap'
import fastifyMlflowTracing, { MemorySink, MlflowTracing, type RequestTrace, type RequestTracingOptions } from '../../plugin/index'
import { mlflowTracing, type ExpressMlflowTracing } from '../../plugin/express/index'
import { parseTrace, silentLogger, type ParsedTrace } from './plugin-app'

/** What a route handler sees of its request, in either framework. */
export interface NeutralRequest {
  mlflow: RequestTrace
  body: any
  headers: IncomingHttpHeaders
  params: Record<string, string>
  user?: unknown
}

/** What a route handler may do to its response besides returning the body. */
export interface NeutralReply {
  header: (name: string, value: string) => unknown
  code: (statusCode: number) => unknown
}

export type Handler = (req: NeutralRequest, reply: NeutralReply) => unknown
/** A streamed text body: headers go out first, then chunks as the handler writes them. */
export interface StreamOut {
  write: (chunk: string) => void
  end: () => void
  /** The stream failed after its headers went out (Fastify: the body stream errors; Express: next(err)). */
  fail: (err: Error) => void
}
export type StreamHandler = (req: NeutralRequest, out: StreamOut) => void

/** A request as the Fastify tests write it for `app.inject`. */
export interface InjectOptions {
  method?: string
  url: string
  headers?: OutgoingHttpHeaders
  payload?: unknown
}

export interface Injected {
  statusCode: number
  headers: IncomingHttpHeaders
  body: string
  json: () => any
}

export interface NeutralApp {
  /** The app itself, so that `const { app, one } = adapter.build(t)` reads like the Fastify-only `buildApp`. */
  readonly app: NeutralApp
  get: (path: string, handler: Handler) => void
  post: (path: string, handler: Handler) => void
  /** `path` answers `text/event-stream` written by `handler`. */
  stream: (method: 'GET' | 'POST', path: string, handler: StreamHandler) => void
  /** Authentication that runs after tracing starts and before the routes (sets `req.user`). */
  auth: (fn: (req: NeutralRequest) => void) => void
  /** A request to the app: Fastify's inject; real HTTP for Express (light-my-request rewires Express's prototypes process-wide). */
  inject: (opts: InjectOptions | string) => Promise<Injected>
  /** Listens on 127.0.0.1 for real HTTP; returns the base URL. */
  listen: () => Promise<string>
  /** Tracing set up as at the app's start (Fastify registers plugins then; Express middleware is built at once). */
  ready: () => Promise<void>
  /** Closes the app (flushing its traces); once, however often called. */
  close: () => Promise<void>
  stats: () => ReturnType<MlflowTracing['stats']> & { invalidSessions: number, hookErrors: number }
  tracing: () => MlflowTracing
  sink: MemorySink
  traces: () => Promise<ParsedTrace[]>
  one: () => Promise<ParsedTrace>
}

export interface Adapter {
  name: 'fastify' | 'express' | 'express4'
  /** The app with tracing in place; with no `tracing` or destination option, traces go to a MemorySink. */
  build: (t: Test, opts?: RequestTracingOptions<any>) => NeutralApp
  /** Sets tracing up with `opts` as an app would, and tears it down: rejects where the options are refused. */
  validate: (opts: RequestTracingOptions<any>) => Promise<void>
}

const fastifyAdapter: Adapter = {
  name: 'fastify',
  async validate (opts) {
    const app = Fastify()
    app.register(fastifyMlflowTracing, withSink(opts, new MemorySink()))
    try {
      await app.ready()
    } finally {
      await app.close().catch(() => {})
    }
  },
  build (t, opts = {}) {
    const sink = new MemorySink()
    const app = Fastify({ logger: false, forceCloseConnections: true })
    app.register(fastifyMlflowTracing, { ...withSink(opts, sink) })
    const ready = async (): Promise<void> => { await app.ready() }
    let closed: Promise<void> | undefined
    const close = async (): Promise<void> => { await (closed ??= app.close()) }
    t.teardown(close)
    const handle = (handler: Handler) => async (req: FastifyRequest, reply: FastifyReply) => await handler(req as unknown as NeutralRequest, reply)
    return finish({
      sink,
      get: (path, handler) => { app.get(path, handle(handler)) },
      post: (path, handler) => { app.post(path, handle(handler)) },
      stream: (method, path, handler) => {
        app.route({ method, url: path, handler: async (req, reply) => {
          const body = new PassThrough()
          reply.header('content-type', 'text/event-stream')
          setImmediate(() => {
            handler(req as unknown as NeutralRequest, {
              write: chunk => { body.write(chunk) },
              end: () => { body.end() },
              fail: err => { body.destroy(err) }
            })
          })
          return await reply.send(body)
        } })
      },
      auth: fn => { app.addHook('preHandler', async req => { fn(req as unknown as NeutralRequest) }) },
      inject: async opts => { await ready(); return await app.inject(opts as any) as unknown as Injected },
      listen: async () => await app.listen({ host: '127.0.0.1', port: 0 }),
      close,
      stats: () => app.mlflowTracing.stats(),
      tracing: () => app.mlflowTracing.tracing,
      ready
    })
  }
}

/** Express 5, and Express 4 (installed as `express4`): the middleware supports both. */
const expressAdapter = (name: 'express' | 'express4', framework: typeof express): Adapter => ({
  name,
  async validate (opts) {
    await mlflowTracing(withSink(opts, new MemorySink())).close()
  },
  build (t, opts = {}) {
    const sink = new MemorySink()
    const tracing: ExpressMlflowTracing = mlflowTracing({ logger: silentLogger, ...withSink(opts, sink) })
    const app = framework()
    app.use(framework.json())
    app.use(tracing)
    // Routes and auth go on a router that the error middleware follows, whatever is added later.
    const routes = framework.Router()
    app.use(routes)
    app.use(tracing.errorHandler)
    app.use((err: Error & { status?: number, statusCode?: number }, _req: Request, res: Response, next: NextFunction) => {
      // Once a stream's headers went out, only Express's own handler can end it (it destroys the socket).
      if (res.headersSent) return next(err)
      res.status(err.status ?? err.statusCode ?? 500).json({ message: err.message })
    })
    let server: Server | undefined
    let listening: Promise<string> | undefined
    const listen = async (): Promise<string> => await (listening ??= new Promise(resolve => {
      const s = server = app.listen(0, '127.0.0.1', () => { resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`) })
    }))
    let closed: Promise<void> | undefined
    const close = async (): Promise<void> => {
      await (closed ??= (async () => {
        if (server !== undefined) {
          const s = server
          s.closeAllConnections()
          await new Promise(resolve => s.close(resolve))
        }
        await tracing.close()
      })())
    }
    t.teardown(close)
    // Express 4 does not pass a rejected handler's error on: the route does.
    const handle = (handler: Handler) => (req: Request, res: Response, next: NextFunction) => {
      const reply: NeutralReply = { header: (name, value) => res.setHeader(name, value), code: code => res.status(code) }
      Promise.resolve().then(async () => await handler(req as unknown as NeutralRequest, reply)).then(value => {
        if (res.headersSent) return
        if (value === undefined) res.end()
        else if (typeof value === 'string') res.type('text/plain').send(value)
        else res.json(value)
      }).catch(next)
    }
    return finish({
      sink,
      get: (path, handler) => { routes.get(path, handle(handler)) },
      post: (path, handler) => { routes.post(path, handle(handler)) },
      stream: (method, path, handler) => {
        routes[method === 'GET' ? 'get' : 'post'](path, (req, res, next) => {
          res.setHeader('content-type', 'text/event-stream')
          res.flushHeaders()
          handler(req as unknown as NeutralRequest, {
            write: chunk => { res.write(chunk) },
            end: () => { res.end() },
            fail: err => { next(err) }
          })
        })
      },
      auth: fn => { routes.use((req, _res, next) => { fn(req as unknown as NeutralRequest); next() }) },
      inject: async opts => await send(await listen(), typeof opts === 'string' ? { url: opts } : opts),
      listen,
      close,
      stats: () => tracing.stats(),
      tracing: () => tracing.tracing,
      ready: async () => { await tracing.ready() }
    })
  }
})

export const adapters: Adapter[] = [fastifyAdapter, expressAdapter('express', express), expressAdapter('express4', express4)]

/** Runs `suite` once per adapter, as a subtest named after it. */
export function forEachAdapter (t: Test, suite: (t: Test, adapter: Adapter) => Promise<void> | void): void {
  for (const adapter of adapters) t.test(adapter.name, async t => { await suite(t, adapter) })
}

/** One HTTP/1.1 request, a fresh connection each, answered as `app.inject` answers. */
async function send (base: string, opts: InjectOptions): Promise<Injected> {
  const json = opts.payload !== undefined && typeof opts.payload !== 'string'
  const body = opts.payload === undefined ? undefined : json ? JSON.stringify(opts.payload) : String(opts.payload)
  const headers: OutgoingHttpHeaders = { ...(json ? { 'content-type': 'application/json' } : {}), ...opts.headers }
  return await new Promise((resolve, reject) => {
    const req = httpRequest(base + opts.url, { method: opts.method ?? 'GET', headers, agent: false }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => { resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: text, json: () => JSON.parse(text) }) })
    })
    req.on('error', reject)
    req.end(body)
  })
}

function withSink (opts: RequestTracingOptions<any>, sink: MemorySink): RequestTracingOptions<any> {
  const hasDestination = opts.tracing !== undefined || opts.trackingUri !== undefined || opts.tracesFile !== undefined || opts.sink !== undefined
  return hasDestination ? opts : { tracing: new MlflowTracing({ sink, logger: silentLogger }), ...opts }
}

type Parts = Omit<NeutralApp, 'traces' | 'one' | 'app'>

function finish (parts: Parts): NeutralApp {
  const traces = async (): Promise<ParsedTrace[]> => {
    await parts.ready()
    await parts.tracing().flush(2000)
    return parts.sink.traces.map(parseTrace)
  }
  const app: NeutralApp = {
    ...parts,
    get app () { return app },
    traces,
    one: async () => {
      const all = await traces()
      if (all.length !== 1) throw new Error(`expected exactly one trace, got ${all.length}`)
      return all[0]
    }
  }
  return app
}
