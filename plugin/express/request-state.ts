import type { Request } from 'express'
import type { TracedRequest } from '../core/request-state'

const kState = Symbol('fastify-mlflow-tracing.request-state')

export type ExpressState = TracedRequest<Request>
type StatefulRequest = Request & { [kState]?: ExpressState }

export function stateOf (req: Request | undefined): ExpressState | undefined {
  return (req as StatefulRequest | undefined)?.[kState]
}

export function setState (req: Request, state: ExpressState): void {
  ;(req as StatefulRequest)[kState] = state
}
