import { RawJson } from '../trace/json'

export const REDACTED = '[REDACTED]'

export interface Captured {
  /** Span inputs/outputs, already JSON text so that serialization does not encode them again. */
  value: RawJson
  /** What the trace list shows: the chat message when there is one. */
  preview: string
}

/** Turns a body into span inputs/outputs: fields named as secrets are replaced, and the JSON text is cut to `maxChars`. */
export function captureBody (body: unknown, redactFields: ReadonlySet<string>, maxChars: number): Captured | undefined {
  if (body === undefined || body === null) return undefined
  const clean = redactFields.size === 0 ? body : redact(body, redactFields, 0)
  let text: string | undefined
  try {
    text = JSON.stringify(clean)
  } catch {}
  if (text === undefined) return undefined
  const json = text.length <= maxChars ? text : JSON.stringify(text.slice(0, maxChars) + '…[truncated]')
  return { value: new RawJson(json), preview: chatText(clean) ?? text }
}

/** A response payload as Fastify hands it to onSend: JSON text is parsed back to be redacted. */
export function capturePayload (payload: unknown, contentType: unknown, redactFields: ReadonlySet<string>, maxChars: number): Captured | undefined {
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return undefined
  const text = payload.toString()
  if (typeof contentType === 'string' && contentType.includes('json')) {
    try {
      return captureBody(JSON.parse(text), redactFields, maxChars)
    } catch {}
  }
  return captureBody(text, redactFields, maxChars)
}

function redact (value: unknown, fields: ReadonlySet<string>, depth: number): unknown {
  if (typeof value !== 'object' || value === null || depth > 32) return value
  if (Array.isArray(value)) return value.map(v => redact(v, fields, depth + 1))
  const out: Record<string, unknown> = {}
  for (const key in value) {
    out[key] = fields.has(key.toLowerCase()) ? REDACTED : redact((value as Record<string, unknown>)[key], fields, depth + 1)
  }
  return out
}

/** The message text of a chat-shaped body, rather than the JSON around it. */
function chatText (body: unknown): string | undefined {
  if (typeof body === 'string') return body
  if (typeof body !== 'object' || body === null) return undefined
  const b = body as Record<string, unknown>
  for (const key of ['message', 'input', 'prompt', 'query', 'question', 'answer', 'output', 'content']) {
    if (typeof b[key] === 'string') return b[key] as string
  }
  if (Array.isArray(b.messages)) {
    const last = b.messages[b.messages.length - 1] as { content?: unknown } | undefined
    if (typeof last?.content === 'string') return last.content
  }
  return undefined
}
