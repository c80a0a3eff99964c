// Runs tap for scripts/test.mjs and scripts/test-servers.mjs: output passed through, the summary kept,
// and Ctrl-C / SIGTERM forwarded so tap winds down and the caller can stop its servers.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { repoRoot } from './ensure-mlflow-venv.mjs'

let tap
/** The exit code a signal asks for, once one arrived. */
export let interruptedCode
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.on(signal, () => {
    interruptedCode ??= code
    // With tap running, let it wind down and the caller stop its servers; before that, exiting
    // is enough: mlflow-server.mjs kills its servers on process exit.
    if (tap) tap.kill(signal)
    else process.exit(code)
  })
}

/**
 * Resolves to tap's exit code, its assertion counts (from `# { total: N, pass: N, fail: N, ... }`)
 * and the names of the failed assertions.
 */
export async function runTap (args, env) {
  tap = spawn(join(repoRoot, 'node_modules', '.bin', 'tap'), args, {
    cwd: repoRoot,
    stdio: ['inherit', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  })
  let summary
  const failures = []
  let pending = ''
  tap.stdout.on('data', chunk => {
    process.stdout.write(chunk)
    const lines = (pending + chunk).split('\n')
    pending = lines.pop()
    for (const line of lines) {
      if (/^# \{ total: \d+/.test(line)) summary = line
      // Assertions only: a subtest's own line carries its time.
      const failed = /^\s+not ok \d+ - (.*)$/.exec(line)
      if (failed && !failed[1].includes(' # time=')) failures.push(failed[1])
    }
  })
  const code = await new Promise(resolve => {
    tap.once('error', err => {
      console.error(`could not run tap: ${err.message}`)
      resolve(1)
    })
    tap.once('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0)))
  })
  tap = undefined
  const count = key => Number(new RegExp(`\\b${key}: (\\d+)`).exec(summary ?? '')?.[1] ?? 0)
  return { code, summarised: summary !== undefined, pass: count('pass'), fail: count('fail'), failures }
}
