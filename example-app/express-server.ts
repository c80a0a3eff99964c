// `npm run start:express`: the example agent on Express instead of Fastify, from the same environment.
import { once } from 'node:events'
import pino from 'pino'
import { closeOnSignals, listenPort, logLevel, tracingOptions } from './environment'
import { buildExpressApp } from './express-app'

async function main (): Promise<void> {
  const logger = pino({ level: logLevel(process.env) })
  const { app, tracing } = buildExpressApp(logger, tracingOptions(process.env))
  // Bad credentials or a missing experiment stop the start, as with the Fastify server.
  await tracing.ready()
  const port = listenPort(process.env)
  const server = app.listen(port, '0.0.0.0')
  await once(server, 'listening')
  const address = server.address()
  logger.info(`Server listening at http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : port}`)
  const close = async (): Promise<void> => {
    await new Promise(resolve => server.close(resolve))
    await tracing.close()
  }
  closeOnSignals(logger, close, () => { server.closeAllConnections() })
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
