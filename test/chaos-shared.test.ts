// Two app processes on one spool directory through an outage: neither loses a trace, neither
// replays one the other replays, and their files stay whole.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { answeredIds, closedStats, killableMlflow, spoolDirFor, steadyLoad, waitStored } from './helpers/chaos'
import { bareEnv, buildOnce, startApp } from './helpers/example-app'

t.setTimeout(20 * 60_000)

t.before(async () => {
  t.comment(`example app: ${await buildOnce()}`)
})

t.test('two processes share one spool directory through a 30-s outage: 0 lost, none replayed twice', async t => {
  const mlflow = await killableMlflow(t)
  const experimentName = `chaos-${randomUUID()}`
  const env = bareEnv({ PORT: '0', MLFLOW_TRACKING_URI: mlflow.uri, MLFLOW_EXPERIMENT_NAME: experimentName, MLFLOW_TRACING_SPOOL_DIR: spoolDirFor(t) })
  const apps = [await startApp(t, env), await startApp(t, env)]
  const loads = apps.map(app => steadyLoad(() => app, 5))
  await sleep(5_000)
  await mlflow.kill()
  await sleep(30_000)
  await mlflow.restart()
  await sleep(5_000)
  const answers = (await Promise.all(loads.map(async l => await l.stop()))).flat()
  const ids = answeredIds(answers)
  t.equal(ids.length, answers.length, 'every request was answered 200')
  const missing = await waitStored(mlflow, experimentName, ids)
  t.same(missing, [], `0 of ${ids.length} lost`)
  for (const app of apps) await app.stop()
  const [a, b] = apps.map(app => closedStats(app)?.spool)
  t.comment(`spools: ${JSON.stringify(a)} ${JSON.stringify(b)}`)
  t.ok(a.spooled + b.spooled > 0, 'the outage went through the spool')
  t.equal(a.replayed + b.replayed, a.spooled + b.spooled, 'each spooled trace replayed once, by one of them')
  t.match([a, b], [{ pending: 0, dropped: { torn: 0 } }, { pending: 0, dropped: { torn: 0 } }])
})
