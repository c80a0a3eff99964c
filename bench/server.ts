// One benchmark variant's server, in its own process: `node dist/bench/server.js <variant>`.
// Prints {"port": N} on stdout once listening on 127.0.0.1; GET /__stats (never traced) returns
// process.memoryUsage() and the tracing stats. Exits on SIGTERM / SIGINT, and when stdin closes if
// BENCH_EXIT_ON_STDIN_END=1 (the runner sets it, so a killed runner leaves no server behind).
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyMlflowTracing, { MlflowTracing } from '../plugin'
import { listenExpress } from './express-server'
import { benchStats, countOtelSpans, hello, STATS_PATH } from './routes'
import { SerializingSink } from './serializing-sink'

// Diagnostic variants (not in the default run): bare-als is bare Fastify with AsyncLocalStorage in
// use on every request; traced-sink-active-root is traced-sink with activeRootSpan: true;
// traced-sink-artifact is traced-sink serializing as the artifact path does. capacity (capacity.ts)
// exports to BENCH_MLFLOW_URI with the defaults, as outage does; spool (spool.ts) too, with the spool on.
// express-bare and express-traced (express-server.ts) are the same app on Express 5, without and with
// the middleware (as traced-sink).
export const VARIANTS = ['bare', 'disabled', 'traced-sink', 'traced-mlflow', 'fastify-otel', 'outage', 'capacity', 'bare-als', 'traced-sink-active-root', 'traced-sink-artifact',
  'spool', 'express-bare', 'express-traced'] as const
export type Variant = typeof VARIANTS[number]

function env (name: string): string {
  const value = process.env[name]
  if (value === undefined || value === '') throw new Error(`${name} must be set for this variant`)
  return value
}

async function registerFastifyOtel (app: FastifyInstance): Promise<void> {
  // Loaded only here so that the other variants do not pay for the OTel SDK's module graph.
  const { context, trace } = await import('@opentelemetry/api')
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks')
  const { BasicTracerProvider, SimpleSpanProcessor } = await import('@opentelemetry/sdk-trace-base')
  type SpanExporter = import('@opentelemetry/sdk-trace-base').SpanExporter
  const { FastifyOtelInstrumentation } = await import('@fastify/otel')

  // Accepts every span at once: measures the instrumentation and span processing, not an exporter.
  const noopExporter: SpanExporter = {
    export: (spans, resultCallback) => {
      countOtelSpans(spans.length)
      resultCallback({ code: 0 /* ExportResultCode.SUCCESS */ })
    },
    shutdown: async () => {}
  }
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(noopExporter)] })
  trace.setGlobalTracerProvider(provider)
  const instrumentation = new FastifyOtelInstrumentation({ ignorePaths: STATS_PATH })
  instrumentation.setTracerProvider(provider)
  await app.register(instrumentation.plugin())
}

async function build (variant: Variant): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  switch (variant) {
    case 'bare':
      break
    case 'bare-als': {
      // A context manager costs nothing until a context is entered: enter one per request.
      const { context, ROOT_CONTEXT, createContextKey } = await import('@opentelemetry/api')
      const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks')
      context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
      const key = createContextKey('bench')
      app.addHook('onRequest', (request, _reply, done) => { context.with(ROOT_CONTEXT.setValue(key, request.id), done) })
      break
    }
    case 'disabled':
      await app.register(fastifyMlflowTracing, { enabled: false, ignore: STATS_PATH })
      break
    case 'traced-sink':
    case 'traced-sink-active-root':
    case 'traced-sink-artifact':
      await app.register(fastifyMlflowTracing, {
        tracing: new MlflowTracing({ sink: new SerializingSink(variant === 'traced-sink-artifact' ? 'artifact' : 'otlp') }),
        ignore: STATS_PATH,
        activeRootSpan: variant === 'traced-sink-active-root'
      })
      break
    case 'traced-mlflow':
      await app.register(fastifyMlflowTracing, {
        trackingUri: env('BENCH_MLFLOW_URI'), experimentName: env('BENCH_EXPERIMENT_NAME'), ignore: STATS_PATH
      })
      break
    case 'outage':
    case 'capacity':
      // A tracking server that is down, or the capacity run's stand-in: experimentId, since a name lookup would need the server.
      await app.register(fastifyMlflowTracing, {
        trackingUri: env('BENCH_MLFLOW_URI'), experimentId: '1', ignore: STATS_PATH
      })
      break
    case 'spool':
      // A real tracking server that the runner stops and starts again, with the durable spool on.
      await app.register(fastifyMlflowTracing, {
        trackingUri: env('BENCH_MLFLOW_URI'), experimentName: env('BENCH_EXPERIMENT_NAME'), spool: env('BENCH_SPOOL_DIR'), ignore: STATS_PATH
      })
      break
    case 'fastify-otel':
      await registerFastifyOtel(app)
      break
  }
  app.get('/', async () => hello())
  app.get(STATS_PATH, async () => benchStats(app.hasDecorator('mlflowTracing') ? app.mlflowTracing : null))
  return app
}

async function listenFastify (variant: Variant): Promise<ReturnType<FastifyInstance['server']['address']>> {
  const app = await build(variant)
  await app.listen({ host: '127.0.0.1', port: 0 })
  return app.server.address()
}

async function main (): Promise<void> {
  const variant = process.argv[2] as Variant
  if (!VARIANTS.includes(variant)) {
    process.stderr.write(`usage: node dist/bench/server.js <${VARIANTS.join('|')}>\n`)
    process.exit(2)
  }
  // Exit at once, without app.close(): a queue of undeliverable traces would hold close() for
  // flushTimeoutMs. process.exit() still writes a --cpu-prof profile.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0))
  // The runner going away (even by SIGKILL) closes our stdin: do not outlive it.
  if (process.env.BENCH_EXIT_ON_STDIN_END === '1') process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume()
  const address = variant === 'express-bare' || variant === 'express-traced' ? await listenExpress(variant) : await listenFastify(variant)
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  process.stdout.write(JSON.stringify({ port: address.port, pid: process.pid }) + '\n')
}

main().catch(err => {
  process.stderr.write(`bench server: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
