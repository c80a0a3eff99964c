// The benchmark's exported trace, shared by the export and serialization workers.
import { ROOT_CONTEXT, SpanKind, trace as otelTrace } from '@opentelemetry/api'
import { SpanType, TraceMetadata, type MlflowSpan, type MlflowTracer } from '../plugin'

/** A chat request: root CHAIN span, a retriever and a chat-model child, small inputs and outputs. */
export function chatTrace (tracer: MlflowTracer, i: number): MlflowSpan {
  const question = `Question ${i}: what is the capital of France, and why?`
  const root = tracer.startSpan('POST /chat', { kind: SpanKind.SERVER, root: true })
  root.setSpanType(SpanType.CHAIN)
  root.setAttributes({ 'http.request.method': 'POST', 'http.route': '/chat' })
  root.setInputs({ messages: [{ role: 'user', content: question }] })
  root.trace.metadata[TraceMetadata.USER] = `user-${i % 50}@example.com`
  root.trace.metadata[TraceMetadata.SESSION] = `session-${i % 200}`
  root.trace.clientRequestId = `req-${i}`
  const ctx = otelTrace.setSpan(ROOT_CONTEXT, root)

  const retrieve = tracer.startSpan('retrieve', {}, ctx)
  retrieve.setSpanType(SpanType.RETRIEVER)
  retrieve.setInputs({ query: question })
  retrieve.setOutputs([{ page_content: 'Paris is the capital and largest city of France.', metadata: { doc_uri: 'kb://geo/fr' } }])
  retrieve.end()

  const llm = tracer.startSpan('chat gpt-4o-mini', { kind: SpanKind.CLIENT }, ctx)
  llm.setSpanType(SpanType.CHAT_MODEL)
  llm.setInputs({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: question }] })
  llm.setLlmResponse({
    model: 'gpt-4o-mini-2024-07-18',
    id: `chatcmpl-${i}`,
    finishReasons: ['stop'],
    usage: { input_tokens: 42, output_tokens: 17 },
    outputs: { choices: [{ message: { role: 'assistant', content: 'Paris: it is the seat of government.' } }] }
  })
  llm.end()

  root.setOutputs({ answer: 'Paris: it is the seat of government.' })
  root.setAttribute('http.response.status_code', 200)
  return root
}

/** Spans of one chatTrace: the root and its two children. */
export const CHAT_TRACE_SPANS = 3
