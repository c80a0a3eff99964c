// Types for ensure-mlflow-venv.mjs, so TypeScript tests can import it.
export const repoRoot: string
export function compareVersions(a: string, b: string): -1 | 0 | 1
export const claimedVersions: string[]
export const matrixVersions: string[]
export const newestVersion: string
export function venvOf(version: string): { dir: string, python: string, mlflow: string }
export const venvDir: string
export const venvPython: string
export const venvMlflow: string
export function requirementsOf(version: string): string[]
export function ensureMlflowVenv(version?: string): Promise<string>
export function ensureMlflowVenvs(versions: string[], parallel?: number): Array<Promise<string>>
