import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { PassThrough } from 'node:stream'
import mlflowTracing, { type FastifyMlflowTracingOptions } from 'fastify-mlflow-tracing'
import { answer, chatSchema, feedbackInput, feedbackSchema, SSE_HEADERS, streamAnswer, type ChatBody, type FeedbackBody } from './agent'

export async function buildApp (
  options: FastifyServerOptions = {}, tracing: FastifyMlflowTracingOptions = {}
): Promise<FastifyInstance> {
  const app = Fastify(options)
  await app.register(mlflowTracing, { ignore: '/healthz', ...tracing })

  app.get('/healthz', async () => ({ ok: true }))

  app.post<{ Body: ChatBody }>('/chat', { schema: { body: chatSchema }, config: { mlflow: { spanType: 'AGENT' } } }, async request => {
    const completion = await answer(request.mlflow, request.body.message)
    return { answer: completion.text, traceId: request.mlflow.traceId }
  })

  app.post<{ Body: ChatBody }>('/chat/stream', { schema: { body: chatSchema }, config: { mlflow: { spanType: 'AGENT' } } }, async (request, reply) => {
    const stream = new PassThrough()
    const completion = await answer(request.mlflow, request.body.message)
    streamAnswer(request.mlflow, completion, chunk => stream.write(chunk), chunk => stream.end(chunk))
    return reply.headers(SSE_HEADERS).send(stream)
  })

  // The end user's thumbs up or down on an answer, by its trace id: one rating per user and answer,
  // only on the user's own traces. The plugin's coded errors carry 400 / 401 / 403 / 404 / 503.
  app.post<{ Body: FeedbackBody }>('/feedback', { schema: { body: feedbackSchema } }, async request => {
    const { assessmentId, created } = await app.mlflowTracing.feedback(request, feedbackInput(request.body))
    return { assessmentId, created }
  })

  return app
}
