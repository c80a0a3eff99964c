import t from 'tap'
import { realMlflow } from './helpers/mlflow'

t.test('the real MLflow server is the newest claimed version', async t => {
  const { newestVersion } = await import('../scripts/ensure-mlflow-venv.mjs')
  const mlflow = await realMlflow(t)
  t.match(mlflow.uri, /^http:\/\/127\.0\.0\.1:\d+$/)

  const res = await fetch(`${mlflow.uri}/version`)
  t.equal(res.status, 200)
  t.equal((await res.text()).trim(), newestVersion, 'GET /version')
  t.equal(mlflow.version, newestVersion, 'reported server version')

  const out = await mlflow.python('import mlflow, json; print(json.dumps({"v": mlflow.__version__}))')
  t.same(out, { v: newestVersion }, 'python client version')
})
