/** Printable ASCII without spaces, quotes or backslashes, at most 128 characters. */
const VALID_SESSION = /^[\w.:@+=\-/]{1,128}$/

/**
 * The conversation id from the session header. Anything else is refused rather than cleaned: a
 * cleaned id could merge two conversations.
 */
export function sessionFrom (header: string | string[] | undefined): { session?: string, invalid: boolean } {
  if (header === undefined) return { invalid: false }
  if (typeof header === 'string' && VALID_SESSION.test(header)) return { session: header, invalid: false }
  return { invalid: true }
}
