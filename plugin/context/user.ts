import type { IncomingHttpHeaders } from 'node:http'

/** Where the trace's user came from; recorded as the `user_source` metadata. */
export type UserSource =
  | 'resolver'
  | 'request.user'
  | 'x-forwarded-email'
  | 'x-forwarded-preferred-username'
  | 'x-forwarded-user'
  | 'unverified-jwt'

export interface ResolvedUser {
  user: string
  source: UserSource
}

/** What the user chain reads of a request, in any framework. */
export interface UserSourceRequest {
  headers: IncomingHttpHeaders
}

export interface UserOptions<R extends UserSourceRequest = UserSourceRequest> {
  /** Asked first; returning undefined falls through to the next source. */
  resolveUser?: (request: R) => string | undefined
  /** How to read a verified identity on `request.user`; false ignores it. */
  requestUser: false | ((user: unknown) => string | undefined)
  /** Trust Databricks Apps' X-Forwarded-* identity headers. */
  trustForwardedIdentity: boolean
  /** Claim to read from an unverified Bearer JWT; undefined never reads one. */
  unverifiedJwtClaim?: string
}

const FORWARDED = ['x-forwarded-email', 'x-forwarded-preferred-username', 'x-forwarded-user'] as const
const MAX_USER = 250

/** The identity fields auth plugins commonly put on `request.user`, most readable first. */
export function defaultRequestUser (user: unknown): string | undefined {
  if (typeof user === 'string') return user
  if (typeof user !== 'object' || user === null) return undefined
  const u = user as Record<string, unknown>
  for (const key of ['email', 'preferred_username', 'username', 'sub', 'id']) {
    const value = u[key]
    if (typeof value === 'string' || typeof value === 'number') return String(value)
  }
  return undefined
}

/**
 * The end user of a request, from the most to the least trustworthy source. A source that cannot
 * be trusted is skipped, never guessed from: no user is better than a made-up one.
 */
export function resolveUser<R extends UserSourceRequest> (request: R, opts: UserOptions<R>): ResolvedUser | undefined {
  if (opts.resolveUser !== undefined) {
    const user = clean(opts.resolveUser(request))
    if (user !== undefined) return { user, source: 'resolver' }
  }
  if (opts.requestUser !== false) {
    const verified = (request as { user?: unknown }).user
    const user = verified === undefined || verified === null ? undefined : clean(opts.requestUser(verified))
    if (user !== undefined) return { user, source: 'request.user' }
  }
  if (opts.trustForwardedIdentity) {
    for (const header of FORWARDED) {
      const user = clean(request.headers[header])
      if (user !== undefined) return { user, source: header }
    }
  }
  if (opts.unverifiedJwtClaim !== undefined) {
    const user = clean(jwtClaim(request.headers.authorization, opts.unverifiedJwtClaim))
    if (user !== undefined) return { user, source: 'unverified-jwt' }
  }
  return undefined
}

function clean (value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined
  // eslint-disable-next-line no-control-regex
  const user = value.replace(/[\u0000-\u001f\u007f]/g, '').trim()
  return user === '' ? undefined : user.slice(0, MAX_USER)
}

function jwtClaim (authorization: string | undefined, claim: string): unknown {
  const token = /^Bearer\s+([\w-]+)\.([\w-]+)\.[\w-]*$/i.exec(authorization ?? '')
  if (token === null) return undefined
  try {
    return (JSON.parse(Buffer.from(token[2], 'base64url').toString('utf8')) as Record<string, unknown>)[claim]
  } catch {
    return undefined
  }
}
