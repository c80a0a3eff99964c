// Makes sure each MLflow version the tests use has a venv with exactly its pins (test/mlflow-servers.json):
// the newest claimed version in .mlflow-venv (other tooling reads MLflow's source there), any other
// version in .mlflow-venv-<version>.
// CLI: `node scripts/ensure-mlflow-venv.mjs [VERSION...]`, by default every claimed version.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..')
const serversFile = join(repoRoot, 'test', 'mlflow-servers.json')
const servers = JSON.parse(readFileSync(serversFile, 'utf8'))

/** Numeric comparison of dotted versions: -1, 0 or 1. */
export function compareVersions (a, b) {
  const [x, y] = [a, b].map(v => v.split('.').map(Number))
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0)
    if (d !== 0) return Math.sign(d)
  }
  return 0
}

/** The versions CI runs the tests against, oldest first. */
export const claimedVersions = [...servers.claimed].sort(compareVersions)
/** The versions `npm run test:servers` runs by default, one per minor. */
export const matrixVersions = [...servers.matrix].sort(compareVersions)
export const newestVersion = claimedVersions.at(-1)

/** Where `version` lives: its venv directory, python and mlflow executables. */
export function venvOf (version) {
  const dir = join(repoRoot, version === newestVersion ? '.mlflow-venv' : `.mlflow-venv-${version}`)
  return { dir, python: join(dir, 'bin', 'python'), mlflow: join(dir, 'bin', 'mlflow') }
}

export const { dir: venvDir, python: venvPython, mlflow: venvMlflow } = venvOf(newestVersion)

/** What pip installs for `version`: the MLflow pin plus what that release needs to start. */
export function requirementsOf (version) {
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new Error(`not an MLflow release version: ${JSON.stringify(version)}`)
  const extra = servers.extraRequirements
    .filter(rule => compareVersions(version, rule.below) < 0)
    .flatMap(rule => rule.requirements)
  return [`mlflow==${version}`, ...extra]
}

async function run (cmd, args) {
  try {
    const { stdout } = await promisify(execFile)(cmd, args, { cwd: repoRoot, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
    return stdout
  } catch (err) {
    const output = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim().split('\n').slice(-40).join('\n')
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${output || err.message}`)
  }
}

async function installedMlflowVersion (mlflow) {
  try {
    return /version (\S+)/.exec(await run(mlflow, ['--version']))?.[1]
  } catch {
    return undefined
  }
}

/** Makes the venv of `version` current; returns a one-line description of what was done. */
export async function ensureMlflowVenv (version = newestVersion) {
  const { dir, python, mlflow } = venvOf(version)
  const requirements = requirementsOf(version)
  const stampFile = join(dir, '.installed-requirements')
  const stamp = `${requirements.join('\n')}\n`
  // The stamp keeps the common case (nothing changed) free of pip and Python start-up costs.
  if (existsSync(python) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) {
    return `mlflow venv: up to date (mlflow ${version} in ${dir})`
  }

  let action
  const current = existsSync(python) ? await installedMlflowVersion(mlflow) : undefined
  if (current === version) {
    action = `found mlflow ${version} in existing ${dir}`
  } else {
    // Recreate rather than upgrade in place so stale packages from another pin cannot linger.
    rmSync(dir, { recursive: true, force: true })
    await run('python3', ['-m', 'venv', dir])
    action = current ? `recreated ${dir} (had mlflow ${current}) and installed` : `created ${dir} and installed`
  }
  await run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '-q', ...requirements])
  const installed = await installedMlflowVersion(mlflow)
  if (installed !== version) {
    throw new Error(`expected mlflow ${version} in ${dir} after pip install, got ${installed ?? 'nothing'}`)
  }
  writeFileSync(stampFile, stamp)
  return current === version
    ? `mlflow venv: ${action}, requirements verified with pip`
    : `mlflow venv: ${action} mlflow ${version} (${requirements.join(' ')})`
}

/**
 * ensureMlflowVenv for each version, at most `parallel` pip runs at a time (pip is mostly
 * waiting on downloads, so 3 at once suit 2 cores). Returns one promise per version, in order,
 * so a caller can use each venv as soon as it is ready.
 */
export function ensureMlflowVenvs (versions, parallel = 3) {
  let slots = parallel
  const waiting = []
  const acquire = () => slots > 0 ? (slots--, Promise.resolve()) : new Promise(resolve => waiting.push(resolve))
  const release = () => { if (waiting.length > 0) waiting.shift()(); else slots++ }
  return versions.map(async version => {
    await acquire()
    try {
      return await ensureMlflowVenv(version)
    } finally {
      release()
    }
  })
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const versions = process.argv.length > 2 ? process.argv.slice(2) : claimedVersions
  const results = await Promise.allSettled(ensureMlflowVenvs(versions))
  for (const [i, r] of results.entries()) {
    if (r.status === 'fulfilled') console.log(r.value)
    else console.error(`ensure-mlflow-venv ${versions[i]}: ${r.reason.message}`)
  }
  if (results.some(r => r.status === 'rejected')) process.exit(1)
}
