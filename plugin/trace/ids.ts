import { randomFillSync } from 'node:crypto'

// Ids come from a pooled random buffer: one syscall serves thousands of spans.
const pool = Buffer.allocUnsafe(64 * 1024)
let offset = pool.length

function randomHex (bytes: number): string {
  if (offset + bytes > pool.length) {
    randomFillSync(pool)
    offset = 0
  }
  const hex = pool.toString('hex', offset, offset + bytes)
  offset += bytes
  return hex
}

/** 32 lowercase hex characters; never all zeros (invalid in W3C trace context). */
export function newTraceIdHex (): string {
  const id = randomHex(16)
  return id === '00000000000000000000000000000000' ? newTraceIdHex() : id
}

export function newSpanIdHex (): string {
  const id = randomHex(8)
  return id === '0000000000000000' ? newSpanIdHex() : id
}

/** `tr-` + 32 hex: the form MLflow gives OTLP-ingested traces too, so ids never clash in form. */
export function mlflowTraceId (traceIdHex: string): string {
  return 'tr-' + traceIdHex
}

const scratch = Buffer.allocUnsafe(16)

/** traces.json carries ids as standard base64 of the raw bytes, not of the hex text. */
export function hexToBase64 (hex: string): string {
  const length = scratch.write(hex, 0, 'hex')
  return scratch.toString('base64', 0, length)
}
