// Starts a throwaway MLflow tracking server on 127.0.0.1 from the venv of one MLflow version
// (scripts/ensure-mlflow-venv.mjs; by default the newest claimed one, in .mlflow-venv).
// CLI: `node scripts/mlflow-server.mjs [--port N] [--mlflow VERSION]` keeps one running on port N (default 5000,
// MLflow's own) with data in .mlflow-data/.
import { spawn } from 'node:child_process'
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { ensureMlflowVenv, newestVersion, repoRoot, venvOf } from './ensure-mlflow-venv.mjs'

// Generous: CI starts several servers at once on 2 cores, and a fresh store runs every migration.
const STARTUP_TIMEOUT_MS = 120_000

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

function groupAlive(pid) {
  try {
    process.kill(-pid, 0)
    return true
  } catch {
    return false
  }
}

function logTail(logFile, lines = 40) {
  try {
    return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/**
 * @param {{ port?: number, dir?: string, minimal?: boolean, fileStore?: boolean, mlflow?: string }} [options]
 *   mlflow: the MLflow version whose venv runs the server (installed beforehand); default the newest claimed.
 *   dir: keep data there (not deleted on stop); by default a temp dir is used and removed by stop().
 *   minimal (default true): 2 workers and no job runner; tracing does not need the job runner's
 *   huey consumers, and skipping them roughly halves start-up time and process count.
 *   fileStore: MLflow's file backend instead of SQLite (it keeps no spans in a database).
 */
export async function startMlflowServer({ port, dir, minimal = true, fileStore = false, mlflow = newestVersion } = {}) {
  const venv = venvOf(mlflow)
  const ownsDir = !dir
  dir = resolve(dir ?? (await mkdtemp(join(tmpdir(), 'mlflow-test-'))))
  mkdirSync(dir, { recursive: true })
  port = port ?? (await freePort())
  const uri = `http://127.0.0.1:${port}`
  const logFile = join(dir, 'mlflow-server.log')
  const logFd = openSync(logFile, 'a')
  const args = ['server', '--host', '127.0.0.1', '--port', String(port),
    '--backend-store-uri', fileStore ? join(dir, 'mlruns') : `sqlite:///${join(dir, 'mlflow.db')}`,
    '--artifacts-destination', join(dir, 'artifacts')]
  // 3.17 refuses the file store unless asked for it.
  const env = { ...process.env, ...(fileStore ? { MLFLOW_ALLOW_FILE_STORE: 'true' } : {}) }
  if (minimal) {
    args.push('--workers', '2')
    env.MLFLOW_SERVER_ENABLE_JOB_EXECUTION = 'false'
  }
  // detached: own process group, so stop() also reaches the uvicorn/huey workers mlflow forks.
  const child = spawn(venv.mlflow, args, { cwd: dir, env, detached: true, stdio: ['ignore', logFd, logFd] })
  closeSync(logFd)
  let exited = false
  child.once('exit', () => { exited = true })
  // Last resort if the caller exits without stop() (crash, process.exit in a signal handler).
  const killOnExit = () => {
    if (groupAlive(child.pid)) process.kill(-child.pid, 'SIGKILL')
    if (ownsDir) rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', killOnExit)

  let stopping
  const stop = () => (stopping ??= (async () => {
    process.removeListener('exit', killOnExit)
    if (groupAlive(child.pid)) {
      process.kill(-child.pid, 'SIGTERM')
      const deadline = Date.now() + 5_000
      while (groupAlive(child.pid) && Date.now() < deadline) await sleep(100)
      if (groupAlive(child.pid)) process.kill(-child.pid, 'SIGKILL')
    }
    if (ownsDir) await rm(dir, { recursive: true, force: true })
  })())

  try {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS
    for (;;) {
      if (exited) throw new Error(`mlflow server exited during startup (exit code ${child.exitCode})`)
      try {
        const res = await fetch(`${uri}/health`, { signal: AbortSignal.timeout(2_000) })
        if (res.ok && (await res.text()).trim() === 'OK') break
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`mlflow server not healthy after ${STARTUP_TIMEOUT_MS / 1000}s`)
      await sleep(250)
    }
    const res = await fetch(`${uri}/version`, { signal: AbortSignal.timeout(10_000) })
    const version = (await res.text()).trim()
    return { uri, version, python: venv.python, dir, logFile, stop }
  } catch (err) {
    const tail = logTail(logFile)
    await stop()
    throw new Error(`${err.message} at ${uri}; last lines of ${logFile}:\n${tail}`)
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name) => {
    const i = process.argv.indexOf(name)
    return i > 0 ? process.argv[i + 1] : undefined
  }
  const port = Number(arg('--port') ?? 5000)
  const mlflow = arg('--mlflow') ?? newestVersion
  if (!Number.isInteger(port)) {
    console.error('usage: node scripts/mlflow-server.mjs [--port N] [--mlflow VERSION]')
    process.exit(2)
  }
  try {
    console.log(await ensureMlflowVenv(mlflow))
    // Data of another version in its own dir: an older server refuses a store migrated by a newer one.
    const data = mlflow === newestVersion ? '.mlflow-data' : `.mlflow-data-${mlflow}`
    const server = await startMlflowServer({ port, dir: join(repoRoot, data), minimal: false, mlflow })
    console.log(`MLflow ${server.version} at ${server.uri} (data in ${server.dir}, log ${server.logFile}); Ctrl-C to stop`)
    const shutdown = async () => {
      await server.stop()
      process.exit(0)
    }
    process.once('SIGINT', shutdown)
    process.once('SIGTERM', shutdown)
  } catch (err) {
    console.error(err.message)
    process.exit(1)
  }
}
