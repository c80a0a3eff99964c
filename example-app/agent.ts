// What the example agent does, whichever framework serves it (app.ts: Fastify, express-app.ts:
// Express): the request bodies it takes, the answer, the streamed answer and the feedback call.
import { setTimeout as sleep } from 'node:timers/promises'
import type { FeedbackInput, RequestTrace } from 'fastify-mlflow-tracing'
import { complete, MODEL, pieces, PROVIDER, type Completion } from './fake-llm'
import { retrieve } from './retriever'

export interface ChatBody {
  message: string
}

export interface FeedbackBody {
  traceId: string
  rating: 'up' | 'down'
  comment?: string
}

/** JSON schemas of the bodies: Fastify validates with them itself, the Express app with Ajv. */
export const feedbackSchema = {
  type: 'object',
  required: ['traceId', 'rating'],
  additionalProperties: false,
  properties: {
    traceId: { type: 'string', pattern: '^tr-[0-9a-f]{32}$' },
    rating: { enum: ['up', 'down'] },
    comment: { type: 'string', maxLength: 4000 }
  }
} as const

export const chatSchema = {
  type: 'object',
  required: ['message'],
  properties: { message: { type: 'string', minLength: 1, maxLength: 4000 } }
} as const

/** The agent: retrieve notes, then ask the (fake) model, each step a span of the request's trace. */
export async function answer (trace: RequestTrace, message: string): Promise<Completion> {
  const notes = await trace.span('retrieve notes', { type: 'RETRIEVER', inputs: { query: message } }, async () => retrieve(message))
  return await trace.llm({ provider: PROVIDER, model: MODEL, inputs: { messages: [{ role: 'user', content: message }] } }, async span => {
    const completion = complete(message, notes)
    span.setLlmResponse({
      model: completion.model,
      id: completion.id,
      finishReasons: [completion.finishReason],
      usage: completion.usage,
      outputs: { role: 'assistant', content: completion.text }
    })
    return completion
  })
}

/** Headers of the streamed answer. */
export const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }

/**
 * Server-Sent Events: the answer in pieces, then a `done` event with the trace id. The trace ends
 * when the last event has been sent, not when the handler returns.
 */
export function streamAnswer (trace: RequestTrace, completion: Completion, write: (chunk: string) => void, end: (chunk: string) => void): void {
  void trace.span('stream answer', { type: 'CHAIN' }, async span => {
    for (const piece of pieces(completion.text)) {
      write(`data: ${JSON.stringify({ delta: piece })}\n\n`)
      await sleep(5)
    }
    end(`event: done\ndata: ${JSON.stringify({ traceId: trace.traceId })}\n\n`)
    span.setOutputs({ events: pieces(completion.text).length })
  })
}

/** The end user's thumbs up or down on an answer, as the plugin's feedback call takes it. */
export function feedbackInput ({ traceId, rating, comment }: FeedbackBody): FeedbackInput {
  return { traceId, value: rating === 'up', rationale: comment }
}
