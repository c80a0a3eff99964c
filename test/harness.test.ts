import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import t from 'tap'
import { realMlflow } from './helpers/mlflow'

const pinned = /^mlflow==(\S+)/m.exec(
  readFileSync(resolve(__dirname, 'mlflow-requirements.txt'), 'utf8'),
)?.[1]

t.test('the real MLflow server is the pinned version', async t => {
  t.ok(pinned, 'test/mlflow-requirements.txt pins mlflow==<version>')
  const mlflow = await realMlflow(t)
  t.match(mlflow.uri, /^http:\/\/127\.0\.0\.1:\d+$/)

  const res = await fetch(`${mlflow.uri}/version`)
  t.equal(res.status, 200)
  t.equal((await res.text()).trim(), pinned, 'GET /version')
  t.equal(mlflow.version, pinned, 'reported server version')

  const out = await mlflow.python('import mlflow, json; print(json.dumps({"v": mlflow.__version__}))')
  t.same(out, { v: pinned }, 'python client version')
})
