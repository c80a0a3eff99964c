import { RawJson } from '../trace/json'

const REDACTED = '[REDACTED]'
/** Ends a captured body that was cut. */
export const TRUNCATED = '…[truncated]'

/** Which body fields are secrets, by name (any case). */
export class Redactor {
  private readonly mention: RegExp

  constructor (readonly fields: ReadonlySet<string>) {
    this.mention = new RegExp('"(?:' + [...fields].map(f => f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|') + ')"\\s*:', 'i')
  }

  /** Whether JSON text may name a secret field. Text with \u escapes might spell one in disguise. */
  mayApply (json: string): boolean {
    return this.fields.size > 0 && (json.includes('\\u') || this.mention.test(json))
  }

  apply (value: unknown): unknown {
    return this.fields.size === 0 ? value : redact(value, this.fields, 0)
  }
}

export interface Captured {
  /** Span inputs/outputs, already JSON text so that serialization does not encode them again. */
  value: RawJson
  /** What the trace list shows: the chat message when there is one. */
  preview: string
}

/** Turns a body into span inputs/outputs: fields named as secrets are replaced, and the JSON text is cut to `maxChars`. */
export function captureBody (body: unknown, redactor: Redactor, maxChars: number): Captured | undefined {
  if (body === undefined || body === null) return undefined
  const clean = redactor.apply(body)
  let text: string | undefined
  try {
    text = JSON.stringify(clean)
  } catch {}
  if (text === undefined) return undefined
  return { value: new RawJson(capped(text, maxChars)), preview: chatText(clean) ?? text }
}

/**
 * A response payload as Fastify hands it to onSend. JSON that names no secret field is kept as the
 * text it is; other JSON is parsed back to be redacted.
 */
export function capturePayload (payload: unknown, contentType: unknown, redactor: Redactor, maxChars: number): Captured | undefined {
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return undefined
  const text = payload.toString()
  if (typeof contentType === 'string' && contentType.includes('json')) {
    if ((text[0] === '{' || text[0] === '[') && !redactor.mayApply(text)) {
      return { value: new RawJson(capped(text, maxChars)), preview: chatTextOfJson(text) ?? text }
    }
    try {
      return captureBody(JSON.parse(text), redactor, maxChars)
    } catch {}
  }
  return captureBody(text, redactor, maxChars)
}

/** JSON text with the secret fields it may name redacted; unreadable JSON that may name one is withheld whole. */
export function redactJson (json: string, redactor: Redactor): string {
  if (!redactor.mayApply(json)) return json
  try {
    return JSON.stringify(redactor.apply(JSON.parse(json)))
  } catch {
    return REDACTED
  }
}

function capped (json: string, maxChars: number): string {
  return json.length <= maxChars ? json : JSON.stringify(json.slice(0, maxChars) + TRUNCATED)
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

/** Fields whose string value is the chat text of a body, most telling first. */
const CHAT_FIELDS = ['message', 'input', 'prompt', 'query', 'question', 'answer', 'output', 'content']
const CHAT_FIELD = new RegExp(`"(?:${CHAT_FIELDS.join('|')})"\\s*:\\s*"((?:[^"\\\\]|\\\\.)*)"`)

/** chatText without parsing: the first chat-like string field in JSON text. */
function chatTextOfJson (json: string): string | undefined {
  const m = CHAT_FIELD.exec(json)
  if (m === null) return undefined
  try {
    return JSON.parse('"' + m[1] + '"') as string
  } catch {
    return undefined
  }
}

/** The message text of a chat-shaped body, rather than the JSON around it. */
function chatText (body: unknown): string | undefined {
  if (typeof body === 'string') return body
  if (typeof body !== 'object' || body === null) return undefined
  const b = body as Record<string, unknown>
  for (const key of CHAT_FIELDS) {
    if (typeof b[key] === 'string') return b[key] as string
  }
  if (Array.isArray(b.messages)) {
    const last = b.messages[b.messages.length - 1] as { content?: unknown } | undefined
    if (typeof last?.content === 'string') return last.content
  }
  return undefined
}
