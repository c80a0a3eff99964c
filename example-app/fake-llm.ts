import { createHash } from 'node:crypto'
import type { Document } from './retriever'

/** A deterministic stand-in for a chat model: no network, no keys, same answer for the same question. */
export const MODEL = 'fake-chat-1'
export const PROVIDER = 'example'

export interface Completion {
  id: string
  model: string
  text: string
  finishReason: 'stop'
  usage: { input_tokens: number, output_tokens: number }
}

export function complete (message: string, context: Document[]): Completion {
  const text = context.length > 0
    ? `From what I know: ${context.map(d => d.text).join(' ')}`
    : `I have no notes about "${message.slice(0, 80)}", but I am happy to help.`
  const id = 'cmpl-' + createHash('sha256').update(message).digest('hex').slice(0, 12)
  return { id, model: `${MODEL}-001`, text, finishReason: 'stop', usage: { input_tokens: countTokens(message) + 8, output_tokens: countTokens(text) } }
}

/** The answer in the pieces a streaming model would send. */
export function pieces (text: string): string[] {
  return text.match(/\S+\s*/g) ?? []
}

function countTokens (text: string): number {
  return pieces(text).length
}
