import Ajv, { type ValidateFunction } from 'ajv'
import express, { type ErrorRequestHandler, type Express, type Request, type RequestHandler } from 'express'
import { mlflowTracing, type ExpressMlflowTracing, type ExpressMlflowTracingOptions } from 'fastify-mlflow-tracing/express'
import type { Logger } from 'pino'
import pinoHttp from 'pino-http'
import { answer, chatSchema, feedbackInput, feedbackSchema, SSE_HEADERS, streamAnswer, type ChatBody, type FeedbackBody } from './agent'

/** The example agent served by Express: the same routes as app.ts, the same agent code. */
export function buildExpressApp (logger: Logger, tracingOpts: ExpressMlflowTracingOptions = {}): { app: Express, tracing: ExpressMlflowTracing } {
  const tracing = mlflowTracing({ ignore: '/healthz', logger, ...tracingOpts })
  const agent = tracing.route({ spanType: 'AGENT' })
  const app = express()
  // pino-http first, so that its request logger carries the trace id.
  app.use(pinoHttp({ logger }))
  app.use(express.json())
  app.use(tracing)

  app.get('/healthz', (_req, res) => { res.json({ ok: true }) })

  app.post('/chat', agent, body<ChatBody>(chatSchema), async (req, res) => {
    const completion = await answer(req.mlflow, req.body.message)
    res.json({ answer: completion.text, traceId: req.mlflow.traceId })
  })

  app.post('/chat/stream', agent, body<ChatBody>(chatSchema), async (req, res) => {
    const completion = await answer(req.mlflow, req.body.message)
    res.writeHead(200, SSE_HEADERS)
    streamAnswer(req.mlflow, completion, chunk => res.write(chunk), chunk => res.end(chunk))
  })

  app.post('/feedback', body<FeedbackBody>(feedbackSchema), async (req, res) => {
    const { assessmentId, created } = await tracing.feedback(req, feedbackInput(req.body))
    res.json({ assessmentId, created })
  })

  app.use(tracing.errorHandler)
  app.use(errorResponse)
  return { app, tracing }
}

const ajv = new Ajv()

/** The body checked against its JSON schema, as Fastify does with a route's schema: 400 otherwise. */
function body<T> (schema: object): RequestHandler {
  const valid = ajv.compile(schema) as ValidateFunction<T>
  return (req: Request, res, next) => {
    if (valid(req.body)) return next()
    res.status(400).json({ statusCode: 400, error: 'Bad Request', message: ajv.errorsText(valid.errors) })
  }
}

/** Errors answered as Fastify answers them: the plugin's coded errors carry their status code. */
const errorResponse: ErrorRequestHandler = (err: Error & { statusCode?: number, status?: number, code?: string }, req, res, next) => {
  if (res.headersSent) return next(err)
  const statusCode = err.statusCode ?? err.status ?? 500
  if (statusCode >= 500) req.log.error({ err }, 'request failed')
  res.status(statusCode).json({ statusCode, code: err.code, error: res.statusMessage, message: statusCode >= 500 ? 'Internal Server Error' : err.message })
}
