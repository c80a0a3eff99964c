import { execFileSync } from 'node:child_process'
import { basename } from 'node:path'
import { TraceMetadata } from '../trace/constants'

type Env = Record<string, string | undefined>

/** Metadata keys the plugin fills from the deployment's environment. */
export const DeploymentMetadata = {
  AGENT_VERSION: 'agent_version',
  DEPLOYMENT_ID: 'deployment_id',
  DEPLOYMENT_REGION: 'deployment_region',
  FEATURE_FLAGS: 'feature_flags'
} as const

/**
 * What every trace of this process shares, computed once at registration: the environment
 * (`APP_ENVIRONMENT` → `mlflow.source.type`), version and deployment ids, and MLflow's automatic
 * source fields. Git data comes from build-time variables first, since deployed apps (Databricks
 * Apps among them) usually have no `.git`; `git` itself is asked only when `useGit` allows.
 */
export function deploymentMetadata (env: Env, useGit = true): Record<string, string> {
  const metadata: Record<string, string> = {
    [TraceMetadata.SOURCE_TYPE]: nonEmpty(env.APP_ENVIRONMENT) ?? 'development',
    [TraceMetadata.SOURCE_NAME]: nonEmpty(env.DATABRICKS_APP_NAME) ?? nonEmpty(env.npm_package_name) ?? basename(process.argv[1] ?? 'node')
  }
  const set = (key: string, value: string | undefined): void => {
    if (value !== undefined) metadata[key] = value
  }
  set(DeploymentMetadata.AGENT_VERSION, nonEmpty(env.AGENT_VERSION))
  set(DeploymentMetadata.DEPLOYMENT_ID, nonEmpty(env.DEPLOYMENT_ID))
  set(DeploymentMetadata.DEPLOYMENT_REGION, nonEmpty(env.DEPLOYMENT_REGION))
  set(DeploymentMetadata.FEATURE_FLAGS, nonEmpty(env.FEATURE_FLAGS))
  set(TraceMetadata.MODEL_ID, nonEmpty(env.MLFLOW_ACTIVE_MODEL_ID))
  set(TraceMetadata.GIT_COMMIT, nonEmpty(env.GIT_COMMIT) ?? (useGit ? git('rev-parse', 'HEAD') : undefined))
  set(TraceMetadata.GIT_BRANCH, nonEmpty(env.GIT_BRANCH) ?? (useGit ? git('branch', '--show-current') : undefined))
  const repo = nonEmpty(env.GIT_REPO_URL) ?? (useGit ? git('config', '--get', 'remote.origin.url') : undefined)
  set(TraceMetadata.GIT_REPO_URL, repo === undefined ? undefined : withoutCredentials(repo))
  return metadata
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim()
}

function git (...args: string[]): string | undefined {
  try {
    return nonEmpty(execFileSync('git', args, { encoding: 'utf8', timeout: 1000, stdio: ['ignore', 'pipe', 'ignore'] }))
  } catch {
    return undefined
  }
}

/** A remote URL may embed a token (`https://user:token@host/…`): it must not reach a trace. */
function withoutCredentials (url: string): string {
  return url.replace(/^([a-z][\w+.-]*:\/\/)[^@/]*@/i, '$1')
}
