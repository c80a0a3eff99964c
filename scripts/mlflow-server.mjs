// Starts a throwaway MLflow tracking server from .mlflow-venv on 127.0.0.1.
// CLI: `node scripts/mlflow-server.mjs [--port N]` keeps one running on port N (default 5000, MLflow's own) with data in .mlflow-data/.
import { spawn } from 'node:child_process'
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { ensureMlflowVenv, repoRoot, venvMlflow } from './ensure-mlflow-venv.mjs'

const STARTUP_TIMEOUT_MS = 60_000

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
 * @param {{ port?: number, dir?: string, minimal?: boolean, fileStore?: boolean }} [options]
 *   dir: keep data there (not deleted on stop); by default a temp dir is used and removed by stop().
 *   minimal (default true): 2 workers and no job runner; tracing does not need the job runner's
 *   huey consumers, and skipping them roughly halves start-up time and process count.
 *   fileStore: MLflow's file backend instead of SQLite (it keeps no spans in a database).
 */
export async function startMlflowServer({ port, dir, minimal = true, fileStore = false } = {}) {
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
  const child = spawn(venvMlflow, args, { cwd: dir, env, detached: true, stdio: ['ignore', logFd, logFd] })
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
    return { uri, version, dir, logFile, stop }
  } catch (err) {
    const tail = logTail(logFile)
    await stop()
    throw new Error(`${err.message} at ${uri}; last lines of ${logFile}:\n${tail}`)
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--port')
  const port = i > 0 ? Number(process.argv[i + 1]) : 5000
  if (!Number.isInteger(port)) {
    console.error('usage: node scripts/mlflow-server.mjs [--port N]')
    process.exit(2)
  }
  try {
    console.log(ensureMlflowVenv())
    const server = await startMlflowServer({ port, dir: join(repoRoot, '.mlflow-data'), minimal: false })
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
