import type { Context } from '@opentelemetry/api'
import type { Captured } from '../context/capture'
import type { StreamText } from '../context/stream-capture'
import { resolveUser } from '../context/user'
import { TraceMetadata, type SpanType } from '../trace/constants'
import { ActiveRequestTrace } from '../trace/request-trace'
import type { MlflowSpan } from '../trace/span'
import type { CoreRequest, CoreResponse } from './request'
import type { TraceCore } from './trace-core'

/** What a route's traces look like: worked out once per route (Fastify) or per app (Express). */
export interface RoutePlan {
  traced: boolean
  url: string | undefined
  spanType: SpanType
  capture: boolean
}

/** One traced request, from open to end: `request.mlflow` for route code, and what the core notes on the way. */
export class TracedRequest<R extends CoreRequest> extends ActiveRequestTrace {
  error: Error | undefined = undefined
  output: Captured | undefined = undefined
  /** A streamed body's text, gathered as it is sent; it becomes `output` when the trace ends. */
  streamed: StreamText | undefined = undefined
  ended = false
  /** Whether bodies are recorded: the route's plan, unless an Express route says otherwise. */
  capture: boolean
  private userResolved = false

  constructor (readonly core: TraceCore<R>, root: MlflowSpan, parent: Context, readonly request: R, readonly response: CoreResponse,
    readonly plan: RoutePlan) {
    super(root, core.tracer, parent)
    this.capture = plan.capture
  }

  /** The user chain, run once: as the trace ends (after auth), or sooner if route code asks. */
  override resolveUser (): void {
    if (this.userResolved) return
    this.userResolved = true
    const record = this.root.trace
    if (record.metadata[TraceMetadata.USER] !== undefined) return
    this.core.problems.guard(() => {
      const found = resolveUser(this.request, this.core.settings.user)
      if (found === undefined) return
      record.metadata[TraceMetadata.USER] = found.user
      record.metadata.user_source = found.source
      this.root.setAttribute('user.id', found.user)
    })
  }
}
