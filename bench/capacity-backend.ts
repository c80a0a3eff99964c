// A stand-in tracking server for the capacity run: `node dist/bench/capacity-backend.js <delayMs>`.
// It only injects load and latency: every call the export makes is answered after <delayMs>, as a
// remote workspace's round trip would be, with the least work that keeps the exporter on its
// normal path (a span store: StartTraceV3 says the spans are in the database). Prints {"port": N};
// GET /__count returns the traces and OTLP requests received and the process's own CPU.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'

const delayMs = Number(process.argv[2] ?? '0')
const counts = { startTrace: 0, otlpRequests: 0, otlpBytes: 0, other: 0 }
const STORED = JSON.stringify({ trace: { trace_info: { trace_id: 'x', tags: { 'mlflow.trace.spansLocation': 'TRACKING_STORE' } } } })
const EXPERIMENT = JSON.stringify({ experiment: { experiment_id: '1', name: 'capacity', lifecycle_stage: 'active', artifact_location: 'mlflow-artifacts:/1' } })

function answer (req: IncomingMessage, res: ServerResponse, bytes: number): void {
  const path = (req.url ?? '/').split('?')[0]
  let body = '{}'
  let type = 'application/json'
  if (path === '/api/3.0/mlflow/traces') {
    counts.startTrace++
    body = STORED
  } else if (path === '/v1/traces') {
    counts.otlpRequests++
    counts.otlpBytes += bytes
    body = ''
    type = 'application/x-protobuf'
  } else if (path === '/version') {
    body = '3.17.2'
    type = 'text/plain'
  } else if (path === '/api/2.0/mlflow/experiments/get') {
    body = EXPERIMENT
  } else if (path === '/__count') {
    return void res.end(JSON.stringify({ ...counts, cpuUs: process.cpuUsage() }))
  } else {
    counts.other++
  }
  const send = (): void => {
    res.writeHead(200, { 'content-type': type })
    res.end(body)
  }
  if (delayMs > 0) setTimeout(send, delayMs)
  else send()
}

const server = createServer((req, res) => {
  let bytes = 0
  req.on('data', (chunk: Buffer) => { bytes += chunk.length })
  req.on('end', () => answer(req, res, bytes))
})
// As many keep-alive connections as the exporter opens; no idle cut-off during a run.
server.keepAliveTimeout = 60_000
server.maxRequestsPerSocket = 0
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  process.stdout.write(JSON.stringify({ port: address.port, pid: process.pid }) + '\n')
})
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0))
if (process.env.BENCH_EXIT_ON_STDIN_END === '1') process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume()
