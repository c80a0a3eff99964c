import { buildApp } from './app'
import { closeOnSignals, listenPort, logLevel, tracingOptions } from './environment'

async function main (): Promise<void> {
  const app = await buildApp({ logger: { level: logLevel(process.env) } }, tracingOptions(process.env))
  await app.listen({ host: '0.0.0.0', port: listenPort(process.env) })
  // Fastify runs onClose hooks (the plugin's flush) only once every connection is gone, and Node
  // never counts a connection opened but not yet used as idle: drain, then close them all.
  closeOnSignals(app.log, async () => {
    await app.close()
    app.log.info({ stats: app.mlflowTracing.stats() }, 'closed')
  }, () => { app.server.closeAllConnections() })
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
