// Shared set-up for the plugin tests: a Fastify app with the plugin exporting to a MemorySink,
// and readers that turn exported traces back into plain objects.
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import fastifyMlflowTracing, { MemorySink, MlflowTracing, type FastifyMlflowTracingOptions, type SerializedTrace } from '../../plugin/index'

export interface ParsedSpan {
  trace_id: string
  span_id: string
  parent_span_id: string
  name: string
  /** Exact nanoseconds (traces.json holds them as JSON integers beyond 2^53). */
  start: bigint
  end: bigint
  /** Attribute values decoded from their JSON text. */
  attributes: Record<string, any>
  /** The raw (JSON-encoded) attribute values. */
  rawAttributes: Record<string, string>
  status: { message: string, code: string }
  events: Array<{ name: string, time: bigint, attributes: Record<string, any> }>
}

export interface ParsedTrace {
  raw: SerializedTrace
  info: SerializedTrace['info']
  spans: ParsedSpan[]
  /** The span without a parent in this trace. */
  root: ParsedSpan
  byName: (name: string) => ParsedSpan
}

const NANO_FIELDS = /"(start_time_unix_nano|end_time_unix_nano|time_unix_nano)":(\d+)/g

/** Parses a traces.json document keeping nanosecond times exact. */
export function parseSpans (spansJson: string): ParsedSpan[] {
  const doc = JSON.parse(spansJson.replace(NANO_FIELDS, '"$1":"$2"')) as { spans: any[] }
  return doc.spans.map(s => {
    const attributes: Record<string, any> = {}
    for (const key in s.attributes) attributes[key] = JSON.parse(s.attributes[key])
    return {
      trace_id: s.trace_id,
      span_id: s.span_id,
      parent_span_id: s.parent_span_id,
      name: s.name,
      start: BigInt(s.start_time_unix_nano),
      end: BigInt(s.end_time_unix_nano),
      attributes,
      rawAttributes: s.attributes,
      status: s.status,
      events: s.events.map((e: any) => ({ name: e.name, time: BigInt(e.time_unix_nano), attributes: e.attributes }))
    }
  })
}

export function parseTrace (raw: SerializedTrace): ParsedTrace {
  const spans = parseSpans(raw.spansJson)
  const ids = new Set(spans.map(s => s.span_id))
  const root = spans.find(s => s.parent_span_id === '' || !ids.has(s.parent_span_id))
  if (root === undefined) throw new Error(`trace ${raw.traceId} has no root span`)
  return {
    raw,
    info: raw.info,
    spans,
    root,
    byName: (name: string) => {
      const span = spans.find(s => s.name === name)
      if (span === undefined) throw new Error(`no span named ${name} in ${spans.map(s => s.name).join(', ')}`)
      return span
    }
  }
}

export interface TestApp {
  app: FastifyInstance
  sink: MemorySink
  /** Flushes the export queue and returns every trace exported so far, parsed. */
  traces: () => Promise<ParsedTrace[]>
  /** Like traces(), but asserts exactly one trace and returns it. */
  one: () => Promise<ParsedTrace>
}

/**
 * A Fastify app with the plugin registered (not yet ready: add routes and hooks, then inject).
 * Closed on teardown.
 */
export function buildApp (t: Test, opts: FastifyMlflowTracingOptions = {}, fastifyOpts: FastifyServerOptions = {}): TestApp {
  const app = Fastify({ logger: false, ...fastifyOpts })
  const sink = new MemorySink()
  app.register(fastifyMlflowTracing, { tracing: new MlflowTracing({ sink, logger: silentLogger }), ...opts })
  t.teardown(async () => { await app.close() })
  const traces = async (): Promise<ParsedTrace[]> => {
    await app.ready()
    await app.mlflowTracing.tracing.flush(2000)
    return sink.traces.map(parseTrace)
  }
  return {
    app,
    sink,
    traces,
    one: async () => {
      const all = await traces()
      if (all.length !== 1) throw new Error(`expected exactly one trace, got ${all.length}`)
      return all[0]
    }
  }
}

export const silentLogger = { info () {}, warn () {}, error () {} }

/** Sets environment variables (undefined deletes) until the test ends. */
export function withEnv (t: Test, vars: Record<string, string | undefined>): void {
  const saved: Record<string, string | undefined> = {}
  for (const key in vars) {
    saved[key] = process.env[key]
    if (vars[key] === undefined) delete process.env[key]
    else process.env[key] = vars[key]
  }
  t.teardown(() => {
    for (const key in saved) {
      if (saved[key] === undefined) delete process.env[key]
      else process.env[key] = saved[key]
    }
  })
}

/** A pino destination that keeps every line, parsed. */
export function logCapture (): { stream: Writable, lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = []
  const stream = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line))
      cb()
    }
  })
  return { stream, lines }
}

/** The decoded status and exception events of a span, for short assertions. */
export function exceptionMessages (span: ParsedSpan): string[] {
  return span.events.filter(e => e.name === 'exception').map(e => String(e.attributes['exception.message']))
}

/** Polls until `check` is true (no time assertion: the deadline only stops a hung test). */
export async function until (check: () => boolean, what: string, deadlineMs = 10_000): Promise<void> {
  const stop = Date.now() + deadlineMs
  while (!check()) {
    if (Date.now() > stop) throw new Error(`gave up waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}
