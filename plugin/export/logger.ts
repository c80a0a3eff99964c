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
