// Outages as an operator sees them: a real MLflow server killed and started again on the same port
// and database (a redeploy), the example app under steady load, and what MLflow's own Python
// client finds stored afterwards.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { postJson, type RunningApp } from './example-app'

const venvPython = resolve(__dirname, '..', '..', '.mlflow-venv', 'bin', 'python')

interface ServerProcess { uri: string, stop: () => Promise<void> }

/** A server of the newest claimed version that the test may kill and start again, keeping its data. */
export interface KillableMlflow {
  uri: string
  kill: () => Promise<void>
  restart: () => Promise<void>
  /** Ids of the traces stored in the experiment, read with MLflow's Python client. */
  storedTraceIds: (experimentName: string) => Promise<Set<string>>
  /** Span counts of the given traces, read with MLflow's Python client. */
  spanCounts: (traceIds: string[]) => Promise<Record<string, number>>
}

export async function killableMlflow (t: Test): Promise<KillableMlflow> {
  const { startMlflowServer } = await import('../../scripts/mlflow-server.mjs')
  const dir = mkdtempSync(join(tmpdir(), 'mlflow-chaos-'))
  let server: ServerProcess | undefined = await startMlflowServer({ dir })
  const uri = (server as ServerProcess).uri
  const port = Number(new URL(uri).port)
  t.teardown(async () => {
    await server?.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  const python = async (code: string): Promise<any> => await new Promise((resolvePromise, reject) => {
    execFile(venvPython, ['-c', code], { env: { ...process.env, MLFLOW_TRACKING_URI: uri }, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`python failed: ${stderr}`))
      else resolvePromise(JSON.parse(stdout.trim().split('\n').pop() as string))
    })
  })
  return {
    uri,
    kill: async () => {
      await server?.stop()
      server = undefined
    },
    restart: async () => {
      server = await startMlflowServer({ dir, port })
    },
    storedTraceIds: async (experimentName: string) => new Set<string>(await python(`
import json
from mlflow import MlflowClient
c = MlflowClient()
exp = c.get_experiment_by_name(${JSON.stringify(experimentName)})
ids, token = [], None
while exp is not None:
    page = c.search_traces(experiment_ids=[exp.experiment_id], max_results=500, page_token=token, include_spans=False)
    ids += [tr.info.trace_id for tr in page]
    token = page.token
    if not token:
        break
print(json.dumps(ids))`)),
    spanCounts: async (traceIds: string[]) => await python(`
import json
from mlflow import MlflowClient
c = MlflowClient()
print(json.dumps({i: len(c.get_trace(i).data.spans) for i in ${JSON.stringify(traceIds)}}))`)
  }
}

export function spoolDirFor (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'mlflow-spool-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** What a request got: its trace id when it was answered 200. */
export interface Answer { status: number, traceId?: string }

/**
 * POST /chat at `perSecond`, each request on its own (a slow answer delays no other), until
 * stop(); `target()` says which app gets the next one (a restarted app has a new port).
 */
export function steadyLoad (target: () => RunningApp | undefined, perSecond = 10): { stop: () => Promise<Answer[]>, answers: Answer[] } {
  const answers: Answer[] = []
  const inFlight = new Set<Promise<void>>()
  let n = 0
  const timer = setInterval(() => {
    const app = target()
    if (app === undefined) return
    const p = postJson(`${app.url}/chat`, { message: `question ${n++}` }).then(async res => {
      await res.arrayBuffer()
      answers.push({ status: res.status, traceId: res.headers.get('x-mlflow-trace-id') ?? undefined })
    }, () => { answers.push({ status: 0 }) }).finally(() => { inFlight.delete(p) })
    inFlight.add(p)
  }, 1000 / perSecond)
  return {
    answers,
    stop: async () => {
      clearInterval(timer)
      await Promise.all([...inFlight])
      return answers
    }
  }
}

/** Trace ids of the answers that were 200. */
export function answeredIds (answers: Answer[]): string[] {
  return answers.filter(a => a.status === 200 && a.traceId !== undefined).map(a => a.traceId as string)
}

/**
 * Waits until every id is stored; gives up once `stallMs` pass without one more stored (a shared,
 * busy machine slows the replay, and progress is what tells a slow replay from a stuck one).
 * Returns the ids still missing.
 */
export async function waitStored (mlflow: KillableMlflow, experimentName: string, ids: string[], stallMs = 90_000): Promise<string[]> {
  let missing = ids
  let progressAt = Date.now()
  for (;;) {
    const stored = await mlflow.storedTraceIds(experimentName)
    const still = ids.filter(id => !stored.has(id))
    if (still.length < missing.length) progressAt = Date.now()
    missing = still
    if (missing.length === 0 || Date.now() - progressAt > stallMs) return missing
    await sleep(3000)
  }
}

/** The stats the example app logs once closed. */
export function closedStats (app: RunningApp): Record<string, any> | undefined {
  return app.logs().find(l => l.msg === 'closed')?.stats
}
