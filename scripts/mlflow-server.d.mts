// Types for mlflow-server.mjs, so TypeScript test helpers can import it.
export interface MlflowServer {
  uri: string
  version: string
  /** The Python of the server's venv, with that version's MLflow client. */
  python: string
  dir: string
  logFile: string
  stop(): Promise<void>
}

export function startMlflowServer(options?: {
  port?: number
  dir?: string
  minimal?: boolean
  fileStore?: boolean
  /** MLflow version whose venv runs the server (installed beforehand). Default: the newest claimed. */
  mlflow?: string
}): Promise<MlflowServer>
