import { StringDecoder } from 'node:string_decoder'
import { chatCompletion } from '../trace/genai'
import { RawJson } from '../trace/json'
import { redactJson, TRUNCATED, type Captured, type Redactor } from './capture'

/** How a streamed body is read: Server-Sent Events, JSON (lines), or other text. */
export type StreamKind = 'sse' | 'json' | 'text'

/** The kind of a streamed body by its content type; undefined for anything not text (binary is not captured). */
export function streamKind (contentType: unknown): StreamKind | undefined {
  if (typeof contentType !== 'string') return undefined
  const type = contentType.toLowerCase()
  if (type.startsWith('text/event-stream')) return 'sse'
  if (type.includes('json')) return 'json'
  if (type.startsWith('text/')) return 'text'
  return undefined
}

/**
 * What a user reads of a streamed response, gathered from its chunks as they go to the client: for
 * SSE, the text of its `data:` events; otherwise the text itself. It holds at most `maxChars`
 * characters and ignores the chunks that come once it is full.
 */
export class StreamText {
  private text = ''
  /** SSE events that are JSON with no text in them, kept (redacted) only while no event had text. */
  private other = ''
  /** SSE: the unfinished last line of the chunks so far, and the data of the event being read. */
  private line = ''
  private data: string | undefined = undefined
  private finishReason: string | undefined = undefined
  private full = false
  private readonly decoder = new StringDecoder('utf8')

  constructor (private readonly kind: StreamKind, private readonly redactor: Redactor, private readonly maxChars: number) {}

  push (chunk: unknown): void {
    if (this.full) return
    const text = typeof chunk === 'string' ? chunk : chunk instanceof Uint8Array ? this.decoder.write(chunk) : ''
    if (this.kind === 'sse') this.readLines(text)
    else this.addText(text)
  }

  /** The root span's outputs, a chat completion of the text, and the text as the preview; undefined for no text. */
  captured (): Captured | undefined {
    let content = this.text !== '' ? this.text : this.other
    if (content === '') return undefined
    if (this.kind === 'json') content = content.split('\n').map(line => redactJson(line, this.redactor)).join('\n')
    if (this.full) content += TRUNCATED
    const finishReasons = this.finishReason === undefined ? undefined : [this.finishReason]
    return { value: new RawJson(JSON.stringify(chatCompletion({ outputs: content, finishReasons }))), preview: content }
  }

  private addText (text: string): void {
    const room = this.maxChars - this.text.length
    if (text.length <= room) {
      this.text += text
    } else {
      this.text += text.slice(0, room)
      this.full = true
    }
    if (this.text !== '') this.other = ''
  }

  private readLines (chunk: string): void {
    const buffer = this.line + chunk
    let start = 0
    for (let end = buffer.indexOf('\n'); end !== -1 && !this.full; end = buffer.indexOf('\n', start)) {
      this.readLine(buffer.slice(start, buffer.charCodeAt(end - 1) === 13 ? end - 1 : end))
      start = end + 1
    }
    this.line = buffer.slice(start)
    // An event larger than the bound is not held: capture ends before it.
    if (this.line.length + (this.data?.length ?? 0) > this.maxChars) this.full = true
  }

  /** One SSE line: `data:` fields make up the event, a blank line ends it; other fields do not matter here. */
  private readLine (line: string): void {
    if (line === '') {
      if (this.data !== undefined) this.readEvent(this.data)
      this.data = undefined
    } else if (line.startsWith('data:')) {
      const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5)
      this.data = this.data === undefined ? value : this.data + '\n' + value
    }
  }

  private readEvent (data: string): void {
    if (data === '[DONE]') return
    const json = parseJson(data)
    // Plain-text events are more often whole lines than pieces of one: each goes on its own line.
    if (json === undefined) return this.addText(this.text === '' ? data : '\n' + data)
    const delta = textDelta(json)
    if (delta !== undefined) this.addText(delta)
    else if (this.text === '' && this.other.length < this.maxChars) this.other += (this.other === '' ? '' : '\n') + redactJson(data, this.redactor)
    const finishReason = prop(prop(prop(json, 'choices'), 0), 'finish_reason')
    if (typeof finishReason === 'string') this.finishReason = finishReason
  }
}

/** Event data that looks like JSON, parsed; undefined for plain text. */
function parseJson (data: string): unknown {
  const first = data.charCodeAt(0)
  if (first !== 123 && first !== 91 && first !== 34) return undefined // { [ "
  try {
    return JSON.parse(data)
  } catch {
    return undefined
  }
}

/**
 * The text an event adds, in the shapes streaming APIs use: a JSON string; `delta` (OpenAI
 * Responses, AI SDK); `choices[0].delta.content` (OpenAI chat completions); `delta.text`
 * (Anthropic); `text`; `content`.
 */
function textDelta (event: unknown): string | undefined {
  if (typeof event === 'string') return event
  const delta = prop(event, 'delta')
  if (typeof delta === 'string') return delta
  const found = [prop(prop(prop(prop(event, 'choices'), 0), 'delta'), 'content'), prop(delta, 'text'), prop(event, 'text'), prop(event, 'content')]
  return found.find(v => typeof v === 'string') as string | undefined
}

function prop (value: unknown, key: string | number): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string | number, unknown>)[key] : undefined
}
