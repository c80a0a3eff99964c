// Runs the example agent the way its users do: built by `npm run build` into dist/, started as its
// own `node` process with an environment the test controls, spoken to over real HTTP.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'

export const repoRoot = resolve(__dirname, '..', '..')
export const serverJs = join('dist', 'example-app', 'server.js')
export const expressServerJs = join('dist', 'example-app', 'express-server.js')

/** The example agent's two servers (`npm start`, `npm run start:express`): the same routes, environment and checks. */
export const EXAMPLE_SERVERS = [
  { name: 'fastify (npm start)', argv: [process.execPath, serverJs] },
  { name: 'express (npm run start:express)', argv: [process.execPath, expressServerJs] }
]
export const tracesJs = join('dist', 'example-app', 'traces.js')

/**
 * A bare environment: nothing inherited from the machine or the test runner (no MLFLOW_*,
 * DATABRICKS_*, APP_ENVIRONMENT, npm_package_name, or tap's NODE_OPTIONS), only what a process
 * needs to find `node` and `git`, no spool, plus `extra`.
 */
export function bareEnv (extra: Record<string, string> = {}): Record<string, string> {
  // No spool unless a test asks for one: the example app's default, ./.mlflow-spool, is the repo's own.
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? tmpdir(), MLFLOW_TRACING_SPOOL_DIR: '' }
  if (process.env.TMPDIR !== undefined) env.TMPDIR = process.env.TMPDIR
  return { ...env, ...extra }
}

// ---------------------------------------------------------------------------------------------
// The build: `npm run build` unless dist/ is newer than every source it compiles.

function walk (dir: string, ext: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...walk(path, ext))
    else if (entry.name.endsWith(ext) && !entry.name.endsWith('.d.ts')) out.push(path)
  }
  return out
}

/** Why dist/ is stale, or undefined when every output is newer than every input. */
export function staleness (): string | undefined {
  const sources = [...walk(join(repoRoot, 'plugin'), '.ts'), ...walk(join(repoRoot, 'example-app'), '.ts')]
  const configs = ['tsconfig.json', 'tsconfig.build.json', join('example-app', 'tsconfig.json')].map(f => join(repoRoot, f))
  const newestInput = Math.max(...[...sources, ...configs].map(f => statSync(f).mtimeMs))
  let oldestOutput = Infinity
  for (const source of sources) {
    const output = join(repoRoot, 'dist', relative(repoRoot, source)).replace(/\.ts$/, '.js')
    try {
      oldestOutput = Math.min(oldestOutput, statSync(output).mtimeMs)
    } catch {
      return `${relative(repoRoot, output)} is missing`
    }
  }
  return oldestOutput >= newestInput ? undefined : 'sources changed since the last build'
}

const lockDir = join(tmpdir(), `fastify-mlflow-tracing-build-${createHash('sha256').update(repoRoot).digest('hex').slice(0, 12)}.lock`)

async function withLock<T> (fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 120_000
  for (;;) {
    try {
      mkdirSync(lockDir)
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      // A lock left by a killed run: older than any build takes.
      try {
        if (Date.now() - statSync(lockDir).mtimeMs > 90_000) rmdirSync(lockDir)
      } catch {}
      if (Date.now() > deadline) throw new Error(`timed out waiting for the build lock ${lockDir}`)
      await sleep(100)
    }
  }
  try {
    return await fn()
  } finally {
    rmdirSync(lockDir)
  }
}

let built: Promise<string> | undefined

/**
 * `npm run build` (cwd the repo root), once per test process and never two at a time across
 * this repo's test files; skipped when dist/ is already fresh. Returns what was done.
 */
export async function buildOnce (): Promise<string> {
  built ??= withLock(async () => {
    const why = staleness()
    if (why === undefined) return 'dist/ is fresh'
    await new Promise<void>((resolvePromise, reject) => {
      execFile('npm', ['run', 'build'], { cwd: repoRoot, env: bareEnv(), timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`npm run build failed (${why}):\n${stdout}\n${stderr}`))
        else resolvePromise()
      })
    })
    const still = staleness()
    if (still !== undefined) throw new Error(`after npm run build, dist/ is still stale: ${still}`)
    return `built (${why})`
  })
  return await built
}

// ---------------------------------------------------------------------------------------------
// The server process.

export interface Exit { code: number | null, signal: NodeJS.Signals | null }

export interface RunningApp {
  proc: ChildProcess
  /** http://127.0.0.1:PORT */
  url: string
  port: number
  /** stdout so far (pino JSON lines). */
  stdout: () => string
  stderr: () => string
  /** The parsed JSON log lines so far. */
  logs: () => Array<Record<string, any>>
  exited: Promise<Exit>
  /** Sends `signal` (SIGTERM by default) and waits for the exit. */
  stop: (signal?: NodeJS.Signals) => Promise<Exit>
}

const LISTENING = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/

/**
 * Spawns `argv` (default `node dist/example-app/server.js`) in the repo root with exactly `env`
 * and waits for the "Server listening at http://127.0.0.1:PORT" line (Fastify's, and express-server.ts's). Killed at teardown.
 */
export async function startApp (t: Test, env: Record<string, string>, argv: string[] = [process.execPath, serverJs]): Promise<RunningApp> {
  const proc = spawn(argv[0], argv.slice(1), { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  const exited = new Promise<Exit>(resolvePromise => proc.once('exit', (code, signal) => resolvePromise({ code, signal })))
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL')
      await exited
    }
  })

  const port = await new Promise<number>((resolvePromise, reject) => {
    const timer = setTimeout(() => { finish(new Error('no "Server listening" line within 20 s')) }, 20_000)
    const onData = (): void => {
      const m = LISTENING.exec(out)
      if (m !== null) finish(undefined, Number(m[1]))
    }
    const onExit = (code: number | null, signal: string | null): void => {
      finish(new Error(`the server exited (code ${code}, signal ${signal}) before listening`))
    }
    function finish (error?: Error, value?: number): void {
      clearTimeout(timer)
      proc.stdout.off('data', onData)
      proc.off('exit', onExit)
      if (error !== undefined) reject(new Error(`${error.message}\nstdout:\n${out}\nstderr:\n${err}`))
      else resolvePromise(value as number)
    }
    proc.stdout.on('data', onData)
    proc.once('exit', onExit)
    onData()
  })

  const logs = (): Array<Record<string, any>> => out.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l))
  return {
    proc,
    url: `http://127.0.0.1:${port}`,
    port,
    stdout: () => out,
    stderr: () => err,
    logs,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return await exited
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Requests and the CLI.

export async function postJson (url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
}

export interface SseEvent { event: string, data: any }

/** Parses a text/event-stream body. */
export function parseSse (text: string): SseEvent[] {
  return text.split('\n\n').filter(block => block.trim() !== '').map(block => {
    let event = 'message'
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice('event:'.length).trim()
      else if (line.startsWith('data:')) data.push(line.slice('data:'.length).trimStart())
    }
    return { event, data: JSON.parse(data.join('\n')) }
  })
}

export interface CliResult { code: number | null, stdout: string, stderr: string }

/** `node dist/example-app/traces.js ...args` in the repo root with exactly `env`. */
export async function runTracesCli (args: string[], env: Record<string, string>): Promise<CliResult> {
  return await new Promise(resolvePromise => {
    execFile(process.execPath, [tracesJs, ...args], { cwd: repoRoot, env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolvePromise({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr })
    })
  })
}

/** The trace ids (tr-…) in a text, in order. */
export function traceIds (text: string): string[] {
  return text.match(/tr-[0-9a-f]{32}/g) ?? []
}
