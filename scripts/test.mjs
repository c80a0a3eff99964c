// `npm test`: runs tap against one real MLflow server shared by all test files.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ensureMlflowVenv, repoRoot, venvPython } from './ensure-mlflow-venv.mjs'
import { startMlflowServer } from './mlflow-server.mjs'

let tap
let interruptedCode
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.on(signal, () => {
    interruptedCode ??= code
    // With tap running, let it wind down and stop the server below; before that,
    // exiting is enough: mlflow-server.mjs kills its server on process exit.
    if (tap) tap.kill(signal)
    else process.exit(code)
  })
}

let server
try {
  console.log(ensureMlflowVenv())
  server = await startMlflowServer()
} catch (err) {
  console.error(err.message)
  process.exit(1)
}
console.log(`real MLflow server ${server.version} at ${server.uri}`)

const countFile = join(server.dir, 'real-server-tests.txt')
tap = spawn(join(repoRoot, 'node_modules', '.bin', 'tap'), process.argv.slice(2), {
  cwd: repoRoot,
  stdio: ['inherit', 'pipe', 'inherit'],
  env: {
    ...process.env,
    MLFLOW_TEST_TRACKING_URI: server.uri,
    MLFLOW_TEST_SERVER_VERSION: server.version,
    MLFLOW_TEST_PYTHON: venvPython,
    MLFLOW_TEST_COUNT_FILE: countFile,
  },
})
// Pass tap's output through, and keep its summary line `# { total: N, pass: N, fail: N, ... }`.
let summary
let pending = ''
tap.stdout.on('data', chunk => {
  process.stdout.write(chunk)
  const lines = (pending + chunk).split('\n')
  pending = lines.pop()
  for (const line of lines) if (/^# \{ total: \d+/.test(line)) summary = line
})
const tapCode = await new Promise(resolve => {
  tap.once('error', err => {
    console.error(`could not run tap: ${err.message}`)
    resolve(1)
  })
  tap.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)))
})

// The count file lives in the server's temp dir, so read it before stop() removes it.
const ran = existsSync(countFile) ? readFileSync(countFile, 'utf8').split('\n').filter(Boolean).length : 0
await server.stop()
console.log(`real-server tests: ${ran} ran against MLflow ${server.version}`)
// The plain closing line CI reads: counts of assertions, from tap's summary.
const count = key => Number(new RegExp(`\\b${key}: (\\d+)`).exec(summary ?? '')?.[1] ?? 0)
if (summary !== undefined) console.log(`tests: ${count('pass')} passed, ${count('fail')} failed`)

if (interruptedCode) process.exit(interruptedCode)
if (process.env.CI === 'true' && ran === 0) {
  console.error('CI=true but no test used the real MLflow server (realMlflow(t) from test/helpers/mlflow.ts)')
  process.exit(1)
}
process.exit(tapCode)
