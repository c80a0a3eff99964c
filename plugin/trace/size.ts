import { RawJson, safeJson } from './json'

/**
 * Values an estimate walks at most. Chat messages, tool inputs and LLM responses take a few dozen;
 * a larger value is serialized to be measured: its size then matters more than the time.
 */
const WALK_BUDGET = 512

/** What a number, boolean or the like weighs: its JSON is rarely longer. */
const SCALAR = 8

/** Thrown (not an Error: no stack to capture) to stop a walk that should not go on. */
const STOP = Symbol('stop')

let budget = 0

/** Roughly the length of `value` as JSON, without serializing it. Never throws: the request path calls it. */
export function jsonSize (value: unknown): number {
  if (typeof value === 'string') return value.length + 2
  if (typeof value !== 'object' || value === null) return SCALAR
  budget = WALK_BUDGET
  try {
    return walk(value)
  } catch {
    // Over budget, toJSON, a getter or proxy that threw, a cycle: safeJson copes with each.
    return safeJson(value).length
  }
}

/** The JSON length of a map, each value weighed on its own: one large value does not spend the budget of the rest. */
export function entriesSize (entries: Readonly<Record<string, unknown>>): number {
  let size = 2
  for (const key in entries) size += key.length + 4 + jsonSize(entries[key])
  return size
}

function walk (value: unknown): number {
  if (--budget < 0) throw STOP
  if (typeof value === 'string') return value.length + 2
  if (typeof value !== 'object' || value === null) return SCALAR
  if (value instanceof RawJson) return value.json.length
  let size = 2
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) size += walk(value[i]) + 1
    return size
  }
  // toJSON (Date, Buffer, class instances) decides the JSON itself.
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') throw STOP
  for (const key in value) size += key.length + 4 + walk((value as Record<string, unknown>)[key])
  return size
}
