// A real MLflow server killed and restarted on the same port and database while traces keep
// coming: none is lost, and none is charged attempts for the time the server was down.
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { MlflowTracing } from '../plugin/tracing'
import { closedPort, recordingLogger } from './helpers/fake-server'

async function pythonCount (python: string, uri: string, experimentId: string): Promise<string[]> {
  const code = `import json, mlflow
traces = mlflow.search_traces(locations=["${experimentId}"], max_results=5000, return_type="list")
print(json.dumps([tr.info.trace_id for tr in traces]))`
  return await new Promise((resolve, reject) => {
    execFile(python, ['-c', code], { env: { ...process.env, MLFLOW_TRACKING_URI: uri }, timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err !== null) return reject(new Error(`${err.message}\n${stderr}`))
      resolve(JSON.parse(stdout.trim().split('\n').pop() as string) as string[])
    })
  })
}

// Two server start-ups on a busy machine take long: more than the file default.
t.setTimeout(300_000)

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

t.test('the tracking server killed and restarted on the same port and database: every trace stored, none charged for the outage', async t => {
  const { startMlflowServer } = await import('../scripts/mlflow-server.mjs')
  const dir = await mkdtemp(join(tmpdir(), 'mlflow-outage-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const port = await closedPort()
  let server = await startMlflowServer({ port, dir })
  t.teardown(async () => await server.stop())

  const logger = recordingLogger()
  const tracing = new MlflowTracing({ logger, queue: { initialBackoffMs: 100, maxBackoffMs: 1000 } },
    { MLFLOW_TRACKING_URI: server.uri, MLFLOW_EXPERIMENT_NAME: `outage-${Date.now()}` })
  t.teardown(async () => { await tracing.shutdown(1000) })
  await tracing.start()
  const experimentId = await tracing.experimentId() as string

  const ids: string[] = []
  let sending = true
  // 10 traces a second, whatever the server does, until it is restarted (its start-up takes long
  // on a busy machine, and a SQLite MLflow on two shared cores takes a few dozen traces a second).
  const load = (async () => {
    while (sending) {
      const span = tracing.tracer.startSpan('request')
      span.setAttribute('i', ids.length)
      span.end()
      ids.push(span.trace.id)
      await sleep(100)
    }
  })()

  await sleep(1000)
  t.equal(tracing.stats().destination.state, 'up')
  await server.stop()
  const killedAt = ids.length
  await sleep(5000)
  let stats = tracing.stats()
  t.equal(stats.destination.state, 'down', 'the queue knows the server is down')
  t.ok(ids.length - killedAt >= 40, `${ids.length - killedAt} traces ended while it was down`)
  // Those in flight as it went down, and any sent while it was shutting down (a worker still answering).
  const chargedDuringOutage = stats.retried
  t.ok(chargedDuringOutage <= 20, `${chargedDuringOutage} attempts charged, to the traces in flight at the kill`)
  sending = false
  await load

  const restarting = Date.now()
  server = await startMlflowServer({ port, dir })
  t.comment(`restarted in ${Date.now() - restarting} ms`)
  const replaying = Date.now()
  t.equal(await tracing.flush(120_000), true, 'everything exported once the server is back')
  t.comment(`exported in ${Date.now() - replaying} ms`)
  stats = tracing.stats()
  t.equal(stats.destination.state, 'up')
  t.equal(stats.exported, ids.length)
  t.equal(stats.retried, chargedDuringOutage, 'no attempt charged to a trace that waited')
  t.same(Object.values(stats.dropped).reduce((a, b) => a + b), 0, 'none dropped')

  const stored = new Set(await pythonCount(server.python, server.uri, experimentId))
  t.equal(ids.filter(id => !stored.has(id)).length, 0, `all ${ids.length} traces are in MLflow (search_traces)`)
})
