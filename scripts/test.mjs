// `npm test`: runs tap against real MLflow servers, one per claimed version (test/mlflow-servers.json).
// The whole suite uses the newest (MLFLOW_TEST_TRACKING_URI); the version-compatibility tests use
// every one of them (MLFLOW_TEST_SERVERS). MLFLOW_TEST_VERSIONS=a,b starts servers for those
// versions instead of the claimed ones (the newest always runs).
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { claimedVersions, compareVersions, ensureMlflowVenvs, newestVersion } from './ensure-mlflow-venv.mjs'
import { startMlflowServer } from './mlflow-server.mjs'
import { interruptedCode, runTap } from './run-tap.mjs'

const requested = process.env.MLFLOW_TEST_VERSIONS?.split(',').filter(Boolean) ?? claimedVersions
const versions = [...new Set([...requested, newestVersion])].sort(compareVersions)

/** Starts one server per version, all at once; on any failure stops the others and throws. */
async function startServers () {
  const results = await Promise.allSettled(versions.map(async mlflow => {
    const server = await startMlflowServer({ mlflow })
    if (server.version !== mlflow) {
      await server.stop()
      throw new Error(`the server from the venv of MLflow ${mlflow} says it is ${server.version}`)
    }
    return server
  }))
  const failed = results.filter(r => r.status === 'rejected')
  if (failed.length === 0) return results.map(r => r.value)
  await Promise.all(results.filter(r => r.status === 'fulfilled').map(r => r.value.stop()))
  throw new Error(failed.map(r => r.reason.message).join('\n'))
}

let servers
try {
  for (const line of await Promise.all(ensureMlflowVenvs(versions))) console.log(line)
  servers = await startServers()
} catch (err) {
  console.error(err.message)
  process.exit(1)
}
const main = servers.find(s => s.version === newestVersion)
for (const s of servers) console.log(`real MLflow server ${s.version} at ${s.uri}`)

const countFile = join(main.dir, 'real-server-tests.txt')
const result = await runTap(process.argv.slice(2), {
  MLFLOW_TEST_TRACKING_URI: main.uri,
  MLFLOW_TEST_SERVER_VERSION: main.version,
  MLFLOW_TEST_PYTHON: main.python,
  MLFLOW_TEST_SERVERS: JSON.stringify(servers.map(({ version, uri, python }) => ({ version, uri, python }))),
  MLFLOW_TEST_COUNT_FILE: countFile,
})

// The count file lives in the main server's temp dir, so read it before stop() removes it.
const ran = existsSync(countFile) ? readFileSync(countFile, 'utf8').split('\n').filter(Boolean) : []
await Promise.all(servers.map(s => s.stop()))
const ranOn = version => ran.filter(line => line.startsWith(`${version}\t`)).length
for (const version of versions) console.log(`real-server tests: ${ranOn(version)} ran against MLflow ${version}`)
// The plain closing line CI reads: counts of assertions, from tap's summary.
if (result.summarised) console.log(`tests: ${result.pass} passed, ${result.fail} failed`)

if (interruptedCode) process.exit(interruptedCode)
const unused = versions.filter(version => ranOn(version) === 0)
if (process.env.CI === 'true' && unused.length > 0) {
  console.error(`CI=true but no test used the real MLflow server of ${unused.join(', ')} ` +
    '(realMlflow(t) or listedServers() from test/helpers/mlflow.ts)')
  process.exit(1)
}
process.exit(result.code)
