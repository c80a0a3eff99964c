// Types for mlflow-server.mjs, so TypeScript test helpers can import it.
export interface MlflowServer {
  uri: string
  version: string
  dir: string
  logFile: string
  stop(): Promise<void>
}

export function startMlflowServer(options?: {
  port?: number
  dir?: string
  minimal?: boolean
  fileStore?: boolean
}): Promise<MlflowServer>
