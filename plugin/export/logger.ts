/** The part of a pino / Fastify logger that the exporter uses. */
export interface Logger {
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
  error: (obj: object, msg?: string) => void
}

/** Stand-in when no logger is given: warnings and errors to stderr, one JSON line each. */
export const stderrLogger: Logger = {
  info: () => {},
  warn: (obj, msg) => { process.stderr.write(JSON.stringify({ level: 'warn', msg, ...obj }) + '\n') },
  error: (obj, msg) => { process.stderr.write(JSON.stringify({ level: 'error', msg, ...obj }) + '\n') }
}

/** Logs a warning at most once a minute per key, so a flood of the same problem stays one line a minute. */
export class ThrottledWarnings {
  private readonly last = new Map<string, number>()

  constructor (private readonly logger: Logger, private readonly intervalMs = 60_000) {}

  /** `describe` builds the log object only when the line is written: a flood costs one comparison each. */
  warn (key: string, describe: () => object, msg: string): void {
    const now = Date.now()
    if (now - (this.last.get(key) ?? -Infinity) < this.intervalMs) return
    this.last.set(key, now)
    this.logger.warn(describe(), msg)
  }
}
