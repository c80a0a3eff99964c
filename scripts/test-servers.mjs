// `npm run test:servers -- [VERSION...]`: the version-compatibility tests (test/server-versions.test.ts)
// against one MLflow server per version in turn, by default the matrix of test/mlflow-servers.json
// (the newest patch of each minor from 3.1). Venvs are installed on demand, three at a time, while
// earlier versions are tested. Not run in CI: a new venv costs 1-2 minutes of pip.
import { ensureMlflowVenvs, matrixVersions } from './ensure-mlflow-venv.mjs'
import { startMlflowServer } from './mlflow-server.mjs'
import { interruptedCode, runTap } from './run-tap.mjs'

const TEST_FILE = 'test/server-versions.test.ts'
const versions = process.argv.length > 2 ? process.argv.slice(2) : matrixVersions

const installs = ensureMlflowVenvs(versions)
// Each is awaited in turn below; until then a failed install must not count as unhandled.
for (const install of installs) install.catch(() => {})

const results = []
for (const [i, version] of versions.entries()) {
  if (interruptedCode) break
  let server
  try {
    console.log(await installs[i])
    server = await startMlflowServer({ mlflow: version })
  } catch (err) {
    results.push({ version, outcome: `no server: ${err.message.split('\n')[0]}` })
    continue
  }
  console.log(`== MLflow ${server.version} at ${server.uri}`)
  const run = await runTap([TEST_FILE], {
    MLFLOW_TEST_SERVERS: JSON.stringify([{ version: server.version, uri: server.uri, python: server.python }]),
  })
  await server.stop()
  const outcome = run.code === 0 ? `ok, ${run.pass} passed` : `FAILED, ${run.pass} passed, ${run.fail} failed`
  results.push({ version, outcome, failures: run.failures })
}

console.log('\nMLflow server matrix:')
for (const { version, outcome, failures = [] } of results) {
  console.log(`  ${version.padEnd(8)} ${outcome}`)
  for (const name of failures) console.log(`             not ok: ${name}`)
}
if (interruptedCode) process.exit(interruptedCode)
process.exit(results.length === versions.length && results.every(r => r.outcome.startsWith('ok')) ? 0 : 1)
