// What a streamed response body becomes as root outputs: the text a user reads, chat-completion shaped.
import t from 'tap'
import { Redactor } from '../plugin/context/capture'
import { StreamText, streamKind, type StreamKind } from '../plugin/context/stream-capture'

const redactor = new Redactor(new Set(['token', 'password']))

/** Feeds `chunks` as the client got them; returns the assembled text, the outputs and the preview. */
function read (kind: StreamKind, chunks: Array<string | Buffer>, maxChars = 10_000): { text: string | undefined, outputs: any, preview: string | undefined } {
  const stream = new StreamText(kind, redactor, maxChars)
  for (const chunk of chunks) stream.push(chunk)
  const captured = stream.captured()
  const outputs = captured === undefined ? undefined : captured.value.toJSON() as any
  return { text: outputs?.choices[0].message.content, outputs, preview: captured?.preview }
}

t.test('content types: SSE, JSON (lines), other text; binary is not captured', async t => {
  t.equal(streamKind('text/event-stream; charset=utf-8'), 'sse')
  t.equal(streamKind('Text/Event-Stream'), 'sse')
  t.equal(streamKind('application/x-ndjson'), 'json')
  t.equal(streamKind('application/json'), 'json')
  t.equal(streamKind('text/plain; charset=utf-8'), 'text')
  for (const binary of ['application/octet-stream', 'image/png', 'audio/mpeg', undefined, 42]) t.equal(streamKind(binary), undefined, `${String(binary)} is not text`)
})

t.test('SSE: the text deltas of the data events, in the shapes streaming APIs use', async t => {
  const openai = (content: unknown, finish: string | null = null): string =>
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish }] })}\n\n`
  const chat = read('sse', [openai(''), openai('Hel'), openai('lo'), openai(undefined, 'stop'), 'data: [DONE]\n\n'])
  t.equal(chat.text, 'Hello', 'OpenAI chat completion chunks: choices[0].delta.content; [DONE] is skipped')
  t.same(chat.outputs, { object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'Hello' }, finish_reason: 'stop' }] },
    'a chat completion, with the finish reason the stream gave')
  t.equal(chat.preview, 'Hello', 'the preview is the text')

  t.equal(read('sse', ['data: {"delta":"Hi"}\n\n', 'data: {"delta":" there"}\n\n']).text, 'Hi there', '`delta` (OpenAI Responses, AI SDK)')
  t.equal(read('sse', [
    'event: message_start\ndata: {"type":"message_start","message":{"id":"m1"}}\n\n',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bon"}}\n\n',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"jour"}}\n\n',
    'event: message_stop\ndata: {"type":"message_stop"}\n\n'
  ]).text, 'Bonjour', 'Anthropic: delta.text; events without text add nothing once there is text')
  t.equal(read('sse', ['data: {"text":"a"}\n\n', 'data: {"content":"b"}\n\n', 'data: "c"\n\n']).text, 'abc', '`text`, `content`, a JSON string')
  t.equal(read('sse', ['data: first\n\n', 'data: second\n\n']).text, 'first\nsecond', 'plain-text events: one line each')
  t.equal(read('sse', ['data: line one\ndata: line two\n\n']).text, 'line one\nline two', 'the data lines of one event join with a newline (the SSE rule)')
})

t.test('SSE: events split across chunks, CRLF line ends, comments and other fields; UTF-8 split inside a character', async t => {
  const euro = Buffer.from('data: {"delta":"5 €"}\r\n\r\n')
  const at = euro.indexOf(0xe2) + 1
  t.equal(read('sse', [': keep-alive\n\n', 'id: 1\nevent: delta\nretry: 100\nda', 'ta: {"del', 'ta":"a"}\n', '\n', euro.subarray(0, at), euro.subarray(at)]).text, 'a5 €')
  t.equal(read('sse', ['data:no space\n\n']).text, 'no space', 'the one space after the colon is optional')
  t.equal(read('sse', ['data: {"delta":"unfinished"}\n']).text, undefined, 'an event the stream never ended is not read, as EventSource does')
})

t.test('SSE: with no text in any event, the JSON events themselves, redacted', async t => {
  const { text } = read('sse', ['data: {"step":1}\n\n', 'data: {"step":2,"token":"s3cret"}\n\n', 'data: [DONE]\n\n'])
  t.equal(text, '{"step":1}\n{"step":2,"token":"[REDACTED]"}')
  t.notMatch(text, 's3cret')
  t.same(read('sse', ['event: ping\n\n', 'data: [DONE]\n\n']).outputs, undefined, 'no data at all: no outputs')
})

t.test('the bound: at most maxChars of text, marked as cut; then the chunks are ignored', async t => {
  const deltas = Array.from({ length: 50 }, (_, i) => `data: {"delta":"${String(i % 10).repeat(10)}"}\n\n`)
  const sse = read('sse', deltas, 25)
  t.equal(sse.text, '0000000000111111111122222…[truncated]')
  t.equal(read('text', ['abc', 'def', 'ghi'], 5).text, 'abcde…[truncated]')
  t.equal(read('sse', [`data: {"delta":"${'x'.repeat(100)}`], 50).text, undefined, 'an event larger than the bound ends the capture')
  t.equal(read('sse', ['data: {"delta":"ok"}\n\n', `data: {"delta":"${'x'.repeat(100)}`], 50).text, 'ok…[truncated]', 'keeping what came before it')
})

t.test('other text streams: the text itself; JSON lines are redacted', async t => {
  t.equal(read('text', ['Hello, ', Buffer.from('wörld')]).text, 'Hello, wörld')
  const ndjson = read('json', ['{"delta":"a"}\n{"password":"hunter2","n":1}\n', '{"broken":"token":'])
  t.equal(ndjson.text, '{"delta":"a"}\n{"password":"[REDACTED]","n":1}\n[REDACTED]', 'a line that may hold a secret but does not parse is withheld')
  t.equal(read('json', ['{"a":1}\n{"b":2}']).text, '{"a":1}\n{"b":2}', 'JSON naming no secret is kept as it is')
  t.equal(read('text', []).outputs, undefined, 'an empty stream: no outputs')
  t.equal(read('text', [{ not: 'a chunk' } as unknown as string]).outputs, undefined, 'object-mode chunks are not text')
})
