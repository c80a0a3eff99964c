// A traced Fastify app listening on 127.0.0.1 for real HTTP, closed (and so flushed) on teardown.
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'

export interface Served {
  url: string
  experimentId: string
  app: FastifyInstance
  /** Closes the app (which flushes its traces) and returns its stats; once, however often called. */
  close: () => Promise<ReturnType<FastifyInstance['mlflowTracing']['stats']>>
}

/** Listens on a free port; `app` has the plugin registered with a tracking server. */
export async function listenTraced (t: Test, app: FastifyInstance): Promise<Served> {
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  let closed: Promise<void> | undefined
  const close = async (): Promise<ReturnType<FastifyInstance['mlflowTracing']['stats']>> => {
    await (closed ??= app.close())
    return app.mlflowTracing.stats()
  }
  t.teardown(close)
  return { url, app, close, experimentId: await app.mlflowTracing.tracing.experimentId() as string }
}
