// Gives a tap test a real MLflow tracking server (started by scripts/test.mjs, or per test file
// when tap is run directly) plus a way to inspect it with the MLflow Python client.
import { execFile } from 'node:child_process'
import { appendFileSync, existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { t as root } from 'tap'
import type { Test } from 'tap'

const venvPython = resolve(__dirname, '..', '..', '.mlflow-venv', 'bin', 'python')

export interface RealMlflow {
  uri: string
  version: string
  /** Runs `python -c code` against the server with that server's own MLflow client; returns JSON.parse of the last stdout line. */
  python(code: string, env?: Record<string, string>): Promise<any>
}

/** A server scripts/test.mjs started (MLFLOW_TEST_SERVERS): its version, URI and venv's Python. */
export interface ListedServer {
  version: string
  uri: string
  python: string
}

let ownServer: Promise<{ uri: string; version: string }> | undefined

// Without scripts/test.mjs (e.g. `npx tap test/x.test.ts`), start one server for this test
// process and stop it when the whole file is done, so subtests share it.
function startOwnServer(): Promise<{ uri: string; version: string }> {
  if (!existsSync(venvPython)) {
    throw new Error(
      `MLflow venv not found at ${venvPython}. Run \`npm test\`, or ` +
        '`node scripts/ensure-mlflow-venv.mjs` before running tap directly.',
    )
  }
  ownServer ??= import('../../scripts/mlflow-server.mjs').then(async ({ startMlflowServer }) => {
    const server = await startMlflowServer()
    root.teardown(() => server.stop())
    return server
  })
  return ownServer
}

export async function realMlflow(t: Test): Promise<RealMlflow> {
  const envUri = process.env.MLFLOW_TEST_TRACKING_URI
  const { uri, version } = envUri
    ? { uri: envUri, version: process.env.MLFLOW_TEST_SERVER_VERSION ?? '' }
    : await startOwnServer()
  return useServer(t, { uri, version, python: process.env.MLFLOW_TEST_PYTHON ?? venvPython })
}

/**
 * The servers of the version-compatibility tests: every one in MLFLOW_TEST_SERVERS (the claimed
 * versions under `npm test`, one version under `npm run test:servers`), or, run directly, one
 * entry for this file's own server of the newest claimed version.
 */
export function listedServers(): Array<{ name: string, connect: (t: Test) => Promise<RealMlflow> }> {
  const listed = process.env.MLFLOW_TEST_SERVERS
  if (!listed) return [{ name: 'the newest claimed version (own server)', connect: realMlflow }]
  return (JSON.parse(listed) as ListedServer[]).map(server => ({
    name: `MLflow ${server.version}`,
    connect: async (t: Test) => useServer(t, server),
  }))
}

/** Counts the test as one that ran against `server` (scripts/test.mjs checks per version). */
function useServer(t: Test, server: ListedServer): RealMlflow {
  const { uri, version } = server
  const countFile = process.env.MLFLOW_TEST_COUNT_FILE
  if (countFile) appendFileSync(countFile, `${version}\t${t.fullname}\n`)

  const python = (code: string, env: Record<string, string> = {}): Promise<any> =>
    new Promise((resolvePromise, reject) => {
      execFile(
        server.python,
        ['-c', code],
        {
          env: { ...process.env, MLFLOW_TRACKING_URI: uri, ...env },
          timeout: 60_000,
          maxBuffer: 64 * 1024 * 1024,
        },
        (err, stdout, stderr) => {
          if (err) {
            const why = err.killed ? 'timed out after 60s' : `failed (exit code ${err.code})`
            return reject(new Error(`python -c ${why}:\n${stderr.trim()}`))
          }
          const last = stdout.trim().split('\n').pop() ?? ''
          try {
            resolvePromise(JSON.parse(last))
          } catch {
            reject(new Error(`python -c: last stdout line is not JSON: ${JSON.stringify(last)}\n${stderr.trim()}`))
          }
        },
      )
    })

  return { uri, version, python }
}

/** The span called `name` of a trace read back by the Python client (`{ spans: [{ name, … }] }`). */
export function byName(trace: any, name: string): any {
  const span = trace.spans.find((s: any) => s.name === name)
  if (span === undefined) throw new Error(`no span ${name} in ${JSON.stringify(trace.spans.map((s: any) => s.name))}`)
  return span
}
