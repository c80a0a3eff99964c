// The tracking server goes away under steady load and comes back on the same port and database,
// as in a redeploy: with a spool, every request answered 200 becomes a stored trace.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { answeredIds, closedStats, killableMlflow, spoolDirFor, steadyLoad, waitStored } from './helpers/chaos'
import { bareEnv, buildOnce, startApp } from './helpers/example-app'

// A 5-minute outage, the replay, and two server starts: longer than .taprc's per-file default.
t.setTimeout(40 * 60_000)

// The scenarios only wait for most of their time (10 req/s, a server down): run them side by side,
// each with its own server and app, so that CI waits for the longest rather than for the sum.
t.jobs = 2

t.before(async () => {
  t.comment(`example app: ${await buildOnce()}`)
})

async function outage (t: Test, seconds: number): Promise<void> {
  const mlflow = await killableMlflow(t)
  const experimentName = `chaos-${randomUUID()}`
  const spool = spoolDirFor(t)
  const app = await startApp(t, bareEnv({ PORT: '0', MLFLOW_TRACKING_URI: mlflow.uri, MLFLOW_EXPERIMENT_NAME: experimentName, MLFLOW_TRACING_SPOOL_DIR: spool }))
  const load = steadyLoad(() => app)
  await sleep(5_000)
  await mlflow.kill()
  const killedAt = load.answers.length
  await sleep(seconds * 1000)
  await mlflow.restart()
  const back = Date.now()
  await sleep(5_000)
  const answers = await load.stop()
  const ids = answeredIds(answers)
  t.equal(ids.length, answers.length, 'every request was answered 200')
  const missing = await waitStored(mlflow, experimentName, ids)
  t.comment(`${answers.length - killedAt} requests during the ${seconds}-s outage; all stored ${((Date.now() - back) / 1000).toFixed(0)} s after the server came back`)
  t.same(missing, [], `0 of ${ids.length} lost`)
  const sample = ids.slice(killedAt, killedAt + 5)
  const counts = await mlflow.spanCounts([ids[0], ...sample])
  t.ok(counts[ids[0]] > 1)
  t.same(sample.map(id => counts[id]), sample.map(() => counts[ids[0]]), 'traces of the outage have every span, as one sent before it')
  await app.stop()
  const stats = closedStats(app)
  t.comment(`stats: ${JSON.stringify(stats)}`)
  // What the app said of the destination and of any drop: the why, should a count below be off.
  for (const line of app.logs().filter(l => /MLflow (trace dropped|destination)/.test(String(l.msg)))) t.comment(JSON.stringify(line))
  t.match(stats, { dropped: { queue_full: 0, retries_exhausted: 0, shutdown: 0 }, spool: { pending: 0, dropped: { evicted: 0, torn: 0 } } })
}

t.test('a 60-s outage at 10 req/s: 0 lost', async t => {
  await outage(t, 60)
})

t.test('a 5-minute outage (more traces than the memory bound): 0 lost with the spool', async t => {
  await outage(t, 300)
})
