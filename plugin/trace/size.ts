import { RawJson, safeJson } from './json'

/** What a number, boolean or the like weighs: its JSON is rarely longer. */
const SCALAR = 8

/**
 * The length of `value` as JSON, or near it. Span attributes hold only scalars and RawJson (objects
 * are encoded when set), so only events' attribute maps, rare and small, are serialized to be weighed.
 * Never throws: the request path calls it.
 */
export function jsonSize (value: unknown): number {
  if (typeof value === 'string') return value.length + 2
  if (value instanceof RawJson) return value.json.length
  if (typeof value !== 'object' || value === null) return SCALAR
  return safeJson(value).length
}

/** The JSON length of a map. */
export function entriesSize (entries: Readonly<Record<string, unknown>>): number {
  let size = 2
  for (const key in entries) size += key.length + 4 + jsonSize(entries[key])
  return size
}
