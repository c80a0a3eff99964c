// The Express variants: the bench's app on Express 5, bare or with the middleware exporting to the
// same serializing sink as traced-sink, so that express-traced / express-bare is the middleware's cost.
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { MlflowTracing } from '../plugin'
import { mlflowTracing } from '../plugin/express'
import { SerializingSink } from './serializing-sink'
import { benchStats, hello, STATS_PATH } from './routes'

export async function listenExpress (variant: 'express-bare' | 'express-traced'): Promise<AddressInfo | string | null> {
  const app = express()
  // Express's default ETag hashes every body: Fastify sends none, so neither does this app.
  app.set('etag', false)
  const tracing = variant === 'express-traced'
    ? mlflowTracing({ tracing: new MlflowTracing({ sink: new SerializingSink('otlp') }), ignore: STATS_PATH })
    : null
  if (tracing !== null) app.use(tracing)
  app.get('/', (_req, res) => { res.json(hello()) })
  app.get(STATS_PATH, (_req, res) => { res.json(benchStats(tracing)) })
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return server.address()
}
