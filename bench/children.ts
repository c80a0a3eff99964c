// The processes the benchmark starts (variant servers, workers, the MLflow server), and making sure
// none outlives the run, even when it is interrupted.
import { spawn, type ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { watchMlflowServer } from './cpu'
import type { GcPauses } from './routes'
import type { Variant } from './server'
import { repoRoot } from './settings'

/** What scripts/mlflow-server.mjs returns (its .d.mts cannot be imported from CommonJS without ceremony). */
interface MlflowServer { uri: string, version: string, stop: () => Promise<void> }

const children = new Set<ChildProcess>()
let mlflow: MlflowServer | undefined

function killChildren (): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

async function cleanUp (): Promise<void> {
  killChildren()
  await stopMlflow()
}

/** Runs the benchmark, then exits; on SIGINT / SIGTERM or failure, stops every child and the MLflow server first. */
export function runMain (main: () => Promise<void>): void {
  // Last resort: 'exit' handlers must be synchronous (mlflow-server.mjs kills its server group there too).
  process.on('exit', killChildren)
  let interrupted = false
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      interrupted = true
      process.stderr.write(`\nbench: ${signal}, stopping children and the MLflow server\n`)
      void cleanUp().finally(() => process.exit(code))
    })
  }
  main().then(async () => {
    await cleanUp()
    process.exit(0)
  }, async (err: unknown) => {
    if (interrupted) return // the signal handler cleans up and exits
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`)
    await cleanUp()
    process.exit(1)
  })
}

/** Environment for children: no MLflow / Databricks settings leak in from the caller's shell. */
function childEnv (extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^(MLFLOW_|DATABRICKS_)/.test(k)) env[k] = v
  return { ...env, BENCH_EXIT_ON_STDIN_END: '1', ...extra }
}

/** Starts dist/bench/<script>, tracked until it exits; its last 20 000 characters of stderr are kept. */
function spawnChild (script: string, args: string[], stdin: 'pipe' | 'ignore', extraEnv: Record<string, string> = {}): { child: ChildProcess, stderr: () => string } {
  const child = spawn(process.execPath, [join(__dirname, script), ...args], {
    cwd: repoRoot, env: childEnv(extraEnv), stdio: [stdin, 'pipe', 'pipe']
  })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let err = ''
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { err = (err + d).slice(-20_000) })
  return { child, stderr: () => err }
}

export interface RunningServer {
  child: ChildProcess
  url: string
  stderr: () => string
}

export async function startServer (variant: Variant, extraEnv: Record<string, string> = {}): Promise<RunningServer> {
  return await startListening('server.js', [variant], extraEnv, `${variant} server`)
}

/** Starts dist/bench/<script>, which prints {"port": N} on its first line once it listens on 127.0.0.1. */
export async function startListening (script: string, args: string[], extraEnv: Record<string, string>, variant: string): Promise<RunningServer> {
  const { child, stderr } = spawnChild(script, args, 'pipe', extraEnv)
  const port = await new Promise<number>((resolvePort, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${variant}: no port after 30 s; stderr:\n${stderr()}`)), 30_000)
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const nl = out.indexOf('\n')
      if (nl === -1) return
      clearTimeout(timer)
      try {
        resolvePort((JSON.parse(out.slice(0, nl)) as { port: number }).port)
      } catch {
        reject(new Error(`${variant}: bad first line ${JSON.stringify(out.slice(0, nl))}`))
      }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${variant} exited (${code ?? signal ?? '?'}) before listening; stderr:\n${stderr()}`))
    })
  })
  return { child, url: `http://127.0.0.1:${port}`, stderr }
}

export async function stopChild (child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolveExit => child.once('exit', () => resolveExit()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

export interface ServerStats {
  memory: NodeJS.MemoryUsage
  tracing: (Record<string, unknown> & { queued: number, queuedBytes: number, exported: number, retried: number, inFlight: number, dropped: Record<string, number> }) | null
  otelSpans: number
  served: number
  /** The event loop's delay since the previous read of the stats, in ms. */
  loopDelay: { p50: number, p99: number, max: number }
  /** The main thread's garbage-collection pauses since the previous read. */
  gc: GcPauses
}

/** Runs `fn` every second until the returned stop() is called; stop() waits for the run in progress. */
export function everySecond (fn: () => Promise<void>): () => Promise<void> {
  let running = true
  const loop = (async () => {
    while (running) {
      await sleep(1000)
      if (running) await fn()
    }
  })()
  return async () => {
    running = false
    await loop
  }
}

/** A variant server's GET /__stats. */
export async function serverStats (url: string): Promise<ServerStats> {
  const res = await fetch(`${url}/__stats`, { signal: AbortSignal.timeout(10_000) })
  if (!res.ok) throw new Error(`/__stats: HTTP ${res.status}`)
  return await res.json() as ServerStats
}

export interface WorkerResult {
  /** The worker's last line of stdout, parsed. */
  result: Record<string, any>
  /** Its first lines of stderr, if any. */
  warnings: string[]
}

/**
 * Runs `node dist/bench/<script> '<args as JSON>'` to its end (killed after `timeoutMs`). Every
 * complete line of stdout goes to `onLine` as it arrives; the last one is the result.
 */
export async function runWorker (script: string, args: object, timeoutMs: number, onLine?: (line: string, pid: number) => void): Promise<WorkerResult> {
  const { child, stderr } = spawnChild(script, [JSON.stringify(args)], 'ignore')
  let out = ''
  let seen = 0
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d
    for (let nl = out.indexOf('\n', seen); nl !== -1; nl = out.indexOf('\n', seen)) {
      onLine?.(out.slice(seen, nl), child.pid as number)
      seen = nl + 1
    }
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const code = await new Promise<number | null>(resolveExit => child.once('exit', c => resolveExit(c)))
  clearTimeout(timer)
  if (code !== 0) throw new Error(`${script} ${JSON.stringify(args)} failed (${code ?? 'killed'}):\n${stderr()}`)
  const err = stderr().trim()
  return { result: JSON.parse(out.trim().split('\n').pop() as string), warnings: err === '' ? [] : err.split('\n').slice(0, 5) }
}

/**
 * Starts the real MLflow server (scripts/mlflow-server.mjs) and counts its CPU apart from here on.
 * With `dir` and `port`, it is one started again on the data and port of one stopped before (an outage).
 */
export async function startMlflow (options: { dir?: string, port?: number } = {}): Promise<MlflowServer> {
  const scripts = pathToFileURL(join(repoRoot, 'scripts')).href
  const { ensureMlflowVenv } = await import(`${scripts}/ensure-mlflow-venv.mjs`) as { ensureMlflowVenv: () => Promise<string> }
  const { startMlflowServer } = await import(`${scripts}/mlflow-server.mjs`) as { startMlflowServer: (o: { dir?: string, port?: number }) => Promise<MlflowServer> }
  console.log(await ensureMlflowVenv())
  mlflow = await startMlflowServer(options)
  const group = watchMlflowServer(new URL(mlflow.uri).port)
  console.log(`MLflow ${mlflow.version} at ${mlflow.uri} (process group ${group ?? 'not found'})`)
  return mlflow
}

/** The running MLflow server's URI; fails if none was started. */
export function mlflowUri (): string {
  if (mlflow === undefined) throw new Error('this measurement needs the MLflow server')
  return mlflow.uri
}

export async function stopMlflow (): Promise<void> {
  const server = mlflow
  mlflow = undefined
  await server?.stop()
}
