import { createHash } from 'node:crypto'
import { join, resolve } from 'node:path'
import { FST_MLFLOW_INVALID_OPTION } from '../../errors'
import { positiveInteger } from '../config'

/** `spool`: a directory, or one with its bound. */
export type SpoolOption = string | { dir: string, maxBytes?: number }

export interface SpoolSettings {
  /** The spool's root; each destination gets a directory of its own inside. */
  dir: string
  maxBytes: number
}

/** Room for about 100 000 typical traces; a long outage fills it at a few MiB a minute. */
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024

type Env = Record<string, string | undefined>

/** The spool the option or `MLFLOW_TRACING_SPOOL_DIR` / `MLFLOW_TRACING_SPOOL_MAX_BYTES` names; undefined for none. */
export function resolveSpool (option: SpoolOption | undefined, env: Env): SpoolSettings | undefined {
  const setting = 'spool (MLFLOW_TRACING_SPOOL_DIR)'
  if (option !== undefined && typeof option !== 'string' && (typeof option !== 'object' || option === null)) {
    throw new FST_MLFLOW_INVALID_OPTION('spool', `expected a directory or { dir, maxBytes }, got ${JSON.stringify(option)}`)
  }
  const dir = typeof option === 'string' ? option : option?.dir ?? env.MLFLOW_TRACING_SPOOL_DIR
  if (dir === undefined || (option === undefined && dir.trim() === '')) return undefined
  if (typeof dir !== 'string' || dir.trim() === '') throw new FST_MLFLOW_INVALID_OPTION(setting, `expected a directory, got ${JSON.stringify(dir)}`)
  let maxBytes: unknown = typeof option === 'object' ? option.maxBytes : undefined
  if (maxBytes === undefined) {
    const raw = env.MLFLOW_TRACING_SPOOL_MAX_BYTES
    maxBytes = raw === undefined || raw.trim() === '' ? DEFAULT_MAX_BYTES : Number(raw)
  }
  positiveInteger(maxBytes, 'spool.maxBytes (MLFLOW_TRACING_SPOOL_MAX_BYTES)')
  return { dir: resolve(dir.trim()), maxBytes: maxBytes as number }
}

/** Each destination's own directory: replay must send a trace where it was meant to go, never elsewhere. */
export function destinationDir (root: string, destination: { host: string, experimentId?: string, experimentName?: string }): string {
  const key = `${destination.host}\n${destination.experimentId ?? ''}\n${destination.experimentName ?? ''}`
  return join(root, createHash('sha256').update(key).digest('hex').slice(0, 16))
}
