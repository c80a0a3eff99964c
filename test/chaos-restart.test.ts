// The app is stopped in the middle of an outage (SIGTERM, as a redeploy does, or SIGKILL, a crash)
// and a new process starts on the same spool directory: it sends what the last one left.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { answeredIds, closedStats, killableMlflow, spoolDirFor, steadyLoad, waitStored } from './helpers/chaos'
import { bareEnv, buildOnce, startApp, type RunningApp } from './helpers/example-app'

t.setTimeout(30 * 60_000)

// The scenarios only wait for most of their time (10 req/s, a server down): run them side by side,
// each with its own server and app, so that CI waits for the longest rather than for the sum.
t.jobs = 2

t.before(async () => {
  t.comment(`example app: ${await buildOnce()}`)
})

async function restartMidOutage (t: Test, signal: 'SIGTERM' | 'SIGKILL'): Promise<{ lost: number, answered: number }> {
  const mlflow = await killableMlflow(t)
  const experimentName = `chaos-${randomUUID()}`
  const env = bareEnv({ PORT: '0', MLFLOW_TRACKING_URI: mlflow.uri, MLFLOW_EXPERIMENT_NAME: experimentName, MLFLOW_TRACING_SPOOL_DIR: spoolDirFor(t) })
  let app: RunningApp | undefined = await startApp(t, env)
  const first = app
  const load = steadyLoad(() => app)
  await sleep(5_000)
  await mlflow.kill()
  await sleep(30_000)
  app = undefined
  await first.stop(signal)
  app = await startApp(t, env)
  const found = app.logs().find(l => typeof l.msg === 'string' && l.msg.startsWith('MLflow tracing: traces go to'))
  t.comment(found?.msg)
  t.ok(found?.spooled > 0, `the new process finds the spooled traces (${String(found?.spooled)})`)
  await sleep(20_000)
  await mlflow.restart()
  await sleep(5_000)
  const answers = await load.stop()
  const ids = answeredIds(answers)
  const missing = await waitStored(mlflow, experimentName, ids)
  if (signal === 'SIGTERM') {
    const stats = closedStats(first)
    t.comment(`first process: ${JSON.stringify(stats)}`)
    t.match(stats, { dropped: { shutdown: 0, queue_full: 0 } }, 'SIGTERM spooled what was left instead of dropping it')
  }
  await app.stop()
  t.comment(`second process: ${JSON.stringify(closedStats(app))}`)
  return { lost: missing.length, answered: ids.length }
}

t.test('SIGTERM mid-outage, a new process on the same spool: 0 lost', async t => {
  const { lost, answered } = await restartMidOutage(t, 'SIGTERM')
  t.equal(lost, 0, `${lost} of ${answered} lost`)
})

t.test('SIGKILL mid-outage, a new process on the same spool: at most 1 % lost', async t => {
  const { lost, answered } = await restartMidOutage(t, 'SIGKILL')
  t.ok(lost <= answered / 100, `${lost} of ${answered} lost`)
})
