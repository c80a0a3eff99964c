import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import mlflowTracing, { type FastifyMlflowTracingOptions, type RequestTrace } from 'fastify-mlflow-tracing'
import { complete, MODEL, pieces, PROVIDER, type Completion } from './fake-llm'
import { retrieve } from './retriever'

interface ChatBody {
  message: string
}

interface FeedbackBody {
  traceId: string
  rating: 'up' | 'down'
  comment?: string
}

const feedbackSchema = {
  body: {
    type: 'object',
    required: ['traceId', 'rating'],
    additionalProperties: false,
    properties: {
      traceId: { type: 'string', pattern: '^tr-[0-9a-f]{32}$' },
      rating: { enum: ['up', 'down'] },
      comment: { type: 'string', maxLength: 4000 }
    }
  }
} as const

const chatSchema = {
  body: {
    type: 'object',
    required: ['message'],
    properties: { message: { type: 'string', minLength: 1, maxLength: 4000 } }
  }
} as const

/** The agent: retrieve notes, then ask the (fake) model, each step a span of the request's trace. */
async function answer (trace: RequestTrace, message: string): Promise<Completion> {
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

export async function buildApp (
  options: FastifyServerOptions = {}, tracing: FastifyMlflowTracingOptions = {}
): Promise<FastifyInstance> {
  const app = Fastify(options)
  await app.register(mlflowTracing, { ignore: '/healthz', ...tracing })

  app.get('/healthz', async () => ({ ok: true }))

  app.post<{ Body: ChatBody }>('/chat', { schema: chatSchema, config: { mlflow: { spanType: 'AGENT' } } }, async request => {
    const completion = await answer(request.mlflow, request.body.message)
    return { answer: completion.text, traceId: request.mlflow.traceId }
  })

  // Server-Sent Events: the trace ends when the last event has been sent, not when the handler returns.
  app.post<{ Body: ChatBody }>('/chat/stream', { schema: chatSchema, config: { mlflow: { spanType: 'AGENT' } } }, async (request, reply) => {
    const stream = new PassThrough()
    const completion = await answer(request.mlflow, request.body.message)
    void request.mlflow.span('stream answer', { type: 'CHAIN' }, async span => {
      for (const piece of pieces(completion.text)) {
        stream.write(`data: ${JSON.stringify({ delta: piece })}\n\n`)
        await sleep(5)
      }
      stream.end(`event: done\ndata: ${JSON.stringify({ traceId: request.mlflow.traceId })}\n\n`)
      span.setOutputs({ events: pieces(completion.text).length })
    })
    return reply.header('content-type', 'text/event-stream').header('cache-control', 'no-cache').send(stream)
  })

  // The end user's thumbs up or down on an answer, by its trace id: one rating per user and answer,
  // only on the user's own traces. The plugin's coded errors carry 400 / 401 / 403 / 404 / 503.
  app.post<{ Body: FeedbackBody }>('/feedback', { schema: feedbackSchema }, async request => {
    const { traceId, rating, comment } = request.body
    const { assessmentId, created } = await app.mlflowTracing.feedback(request, { traceId, value: rating === 'up', rationale: comment })
    return { assessmentId, created }
  })

  return app
}
