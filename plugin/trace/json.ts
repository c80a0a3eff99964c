/** A value that is already JSON text: serialization writes it as it is. */
export class RawJson {
  constructor (readonly json: string) {}
  toJSON (): unknown {
    return JSON.parse(this.json)
  }
}

/** JSON text of any value: never throws (BigInt, cycles, throwing toJSON) and never returns undefined. */
export function safeJson (value: unknown): string {
  if (value instanceof RawJson) return value.json
  try {
    return JSON.stringify(value) ?? 'null'
  } catch {
    try {
      const seen = new WeakSet<object>()
      return JSON.stringify(value, (_key, v: unknown) => {
        if (typeof v === 'bigint') return v.toString()
        if (typeof v === 'object' && v !== null) {
          if (seen.has(v)) return '[Circular]'
          seen.add(v)
        }
        return v
      }) ?? 'null'
    } catch {
      return JSON.stringify(String(value))
    }
  }
}

/** Characters JSON.stringify escapes in a string (any surrogate, to be safe about lone ones). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/

/**
 * Whether JSON writes `text` as it is, between quotes. Asking costs far less than JSON.stringify's
 * fixed cost per call (about 0.07 µs, the larger part of writing a short string).
 */
export function isPlainJsonText (text: string): boolean {
  return !NEEDS_ESCAPE.test(text)
}

/** JSON.stringify(text), cheaper for text that needs no escaping. */
export function jsonString (text: string): string {
  return isPlainJsonText(text) ? '"' + text + '"' : JSON.stringify(text)
}

/** Cuts at `max` characters, never inside a surrogate pair, marking the cut with `...`. */
export function truncate (text: string, max: number): string {
  if (text.length <= max) return text
  let cut = max - 3
  const code = text.charCodeAt(cut - 1)
  if (code >= 0xd800 && code <= 0xdbff) cut--
  return text.slice(0, cut) + '...'
}
