import { SpanAttribute } from './constants'
import type { TokenUsage } from './span'

/** OTel GenAI semantic-convention keys the plugin writes (semconv v1.41). */
export const GenAi = {
  OPERATION: 'gen_ai.operation.name',
  PROVIDER: 'gen_ai.provider.name',
  REQUEST_MODEL: 'gen_ai.request.model',
  RESPONSE_MODEL: 'gen_ai.response.model',
  RESPONSE_ID: 'gen_ai.response.id',
  FINISH_REASONS: 'gen_ai.response.finish_reasons',
  INPUT_TOKENS: 'gen_ai.usage.input_tokens',
  OUTPUT_TOKENS: 'gen_ai.usage.output_tokens',
  CONVERSATION_ID: 'gen_ai.conversation.id'
} as const

export interface LlmRequest {
  provider: string
  model: string
  /** `gen_ai.operation.name`. Default `chat`. */
  operation?: string
  /** Span name. Default `{operation} {model}`, as the semantic conventions name it. */
  name?: string
  inputs?: unknown
}

export interface LlmResponse {
  model?: string
  id?: string
  finishReasons?: string[]
  usage?: TokenUsage
  outputs?: unknown
}

export function llmRequestAttributes (req: LlmRequest, session: string | undefined): Record<string, unknown> {
  const attributes: Record<string, unknown> = {
    [GenAi.OPERATION]: req.operation ?? 'chat',
    [GenAi.PROVIDER]: req.provider,
    [GenAi.REQUEST_MODEL]: req.model,
    [SpanAttribute.LLM_MODEL]: req.model,
    [SpanAttribute.LLM_PROVIDER]: req.provider
  }
  if (session !== undefined) attributes[GenAi.CONVERSATION_ID] = session
  if (req.inputs !== undefined) attributes[SpanAttribute.INPUTS] = req.inputs
  return attributes
}

/** The response side, with token usage both as GenAI attributes and as MLflow's own (which the MLflow UI shows). */
export function llmResponseAttributes (res: LlmResponse): Record<string, unknown> {
  const attributes: Record<string, unknown> = {}
  if (res.model !== undefined) {
    attributes[GenAi.RESPONSE_MODEL] = res.model
    attributes[SpanAttribute.LLM_MODEL] = res.model
  }
  if (res.id !== undefined) attributes[GenAi.RESPONSE_ID] = res.id
  if (res.finishReasons !== undefined) attributes[GenAi.FINISH_REASONS] = res.finishReasons
  if (res.usage !== undefined) {
    attributes[GenAi.INPUT_TOKENS] = res.usage.input_tokens
    attributes[GenAi.OUTPUT_TOKENS] = res.usage.output_tokens
    attributes[SpanAttribute.TOKEN_USAGE] = { ...res.usage, total_tokens: totalTokens(res.usage) }
  }
  if (res.outputs !== undefined) attributes[SpanAttribute.OUTPUTS] = chatCompletion(res)
  return attributes
}

/**
 * A model's reply as OpenAI's chat completion, the shape MLflow's UI shows as a chat message
 * (mlflow/types/chat.py ChatCompletionResponse): a string is one assistant message; a message
 * (`role` and `content`, as mlflow/tracing/utils/truncation.py `_is_message` tells one) or an
 * array of them are the choices. Anything else, a chat completion included, is kept as given.
 */
export function chatCompletion (res: LlmResponse): unknown {
  const choices = choicesOf(res.outputs, res.finishReasons)
  if (choices === undefined) return res.outputs
  const completion: Record<string, unknown> = {}
  if (res.id !== undefined) completion.id = res.id
  completion.object = 'chat.completion'
  if (res.model !== undefined) completion.model = res.model
  completion.choices = choices
  if (res.usage !== undefined) {
    completion.usage = { prompt_tokens: res.usage.input_tokens, completion_tokens: res.usage.output_tokens, total_tokens: totalTokens(res.usage) }
  }
  return completion
}

function choicesOf (outputs: unknown, finishReasons: string[] | undefined): object[] | undefined {
  const messages = typeof outputs === 'string'
    ? [{ role: 'assistant', content: outputs }]
    : isMessage(outputs) ? [outputs] : Array.isArray(outputs) && outputs.length > 0 && outputs.every(isMessage) ? outputs : undefined
  return messages?.map((message, index) => ({ index, message, finish_reason: finishReasons?.[index] ?? null }))
}

function isMessage (value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && 'role' in value && 'content' in value
}

export function totalTokens (usage: TokenUsage): number {
  return usage.total_tokens ?? usage.input_tokens + usage.output_tokens
}
