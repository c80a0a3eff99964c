// Makes sure .mlflow-venv has exactly the MLflow pinned in test/mlflow-requirements.txt.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..')
export const venvDir = join(repoRoot, '.mlflow-venv')
export const venvPython = join(venvDir, 'bin', 'python')
export const venvMlflow = join(venvDir, 'bin', 'mlflow')
const requirementsFile = join(repoRoot, 'test', 'mlflow-requirements.txt')
const stampFile = join(venvDir, '.installed-requirements')

export function pinnedMlflowVersion() {
  const m = /^mlflow==(\S+)/m.exec(readFileSync(requirementsFile, 'utf8'))
  if (!m) throw new Error(`no "mlflow==<version>" line in ${requirementsFile}`)
  return m[1]
}

function installedMlflowVersion() {
  try {
    const out = execFileSync(venvMlflow, ['--version'], { encoding: 'utf8', stdio: 'pipe' })
    return /version (\S+)/.exec(out)?.[1]
  } catch {
    return undefined
  }
}

function run(cmd, args) {
  try {
    execFileSync(cmd, args, { cwd: repoRoot, encoding: 'utf8', stdio: 'pipe' })
  } catch (err) {
    const output = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim().split('\n').slice(-40).join('\n')
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${output || err.message}`)
  }
}

/** Returns a one-line description of what was done. */
export function ensureMlflowVenv() {
  const requirements = readFileSync(requirementsFile, 'utf8')
  const pinned = pinnedMlflowVersion()
  // The stamp keeps the common case (nothing changed) free of pip and Python start-up costs.
  if (existsSync(venvPython) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === requirements) {
    return `mlflow venv: up to date (mlflow ${pinned} in ${venvDir})`
  }

  let action
  const current = existsSync(venvPython) ? installedMlflowVersion() : undefined
  if (current === pinned) {
    action = `found mlflow ${pinned} in existing ${venvDir}`
  } else {
    // Recreate rather than upgrade in place so stale packages from another pin cannot linger.
    rmSync(venvDir, { recursive: true, force: true })
    run('python3', ['-m', 'venv', venvDir])
    action = current
      ? `recreated ${venvDir} (had mlflow ${current}) and installed`
      : `created ${venvDir} and installed`
  }
  run(venvPython, ['-m', 'pip', 'install', '--disable-pip-version-check', '-q', '-r', requirementsFile])
  const installed = installedMlflowVersion()
  if (installed !== pinned) {
    throw new Error(`expected mlflow ${pinned} in ${venvDir} after pip install, got ${installed ?? 'nothing'}`)
  }
  writeFileSync(stampFile, requirements)
  return current === pinned
    ? `mlflow venv: ${action}, requirements verified with pip`
    : `mlflow venv: ${action} mlflow ${pinned}`
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    console.log(ensureMlflowVenv())
  } catch (err) {
    console.error(`ensure-mlflow-venv: ${err.message}`)
    process.exit(1)
  }
}
