import { httpRequest, MlflowHttpError } from './http'

/** Returns the `Authorization` header value for the next call, or undefined for none. */
export type AuthProvider = () => Promise<string | undefined>

export const noAuth: AuthProvider = async () => undefined

export function basicAuth (username: string, password: string): AuthProvider {
  const header = 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64')
  return async () => header
}

export function bearerAuth (token: string): AuthProvider {
  const header = 'Bearer ' + token
  return async () => header
}

export interface OAuthOptions {
  host: string
  clientId: string
  clientSecret: string
  timeoutMs: number
  /** Refresh this long before expiry (at most half the token's life), so no call goes out with a token about to lapse. */
  refreshMarginMs?: number
  now?: () => number
}

/**
 * Databricks OAuth M2M (client credentials), the service-principal flow of Databricks Apps.
 * The token is cached, refreshed before it expires, and concurrent callers share one refresh.
 */
export function databricksOAuth (opts: OAuthOptions): AuthProvider {
  const now = opts.now ?? Date.now
  const margin = opts.refreshMarginMs ?? 5 * 60_000
  const basic = 'Basic ' + Buffer.from(`${opts.clientId}:${opts.clientSecret}`).toString('base64')
  let header: string | undefined
  let refreshAt = 0
  let pending: Promise<string> | undefined

  async function fetchToken (): Promise<string> {
    const res = await httpRequest({
      method: 'POST',
      url: `${opts.host}/oidc/v1/token`,
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&scope=all-apis',
      timeoutMs: opts.timeoutMs
    })
    const body = JSON.parse(res.text) as { access_token?: string, token_type?: string, expires_in?: number }
    if (typeof body.access_token !== 'string') {
      throw new MlflowHttpError('POST /oidc/v1/token: answer has no access_token', res.status, 'BAD_TOKEN_RESPONSE')
    }
    header = `${body.token_type ?? 'Bearer'} ${body.access_token}`
    const lifeMs = (body.expires_in ?? 3600) * 1000
    refreshAt = now() + lifeMs - Math.min(margin, lifeMs / 2)
    return header
  }

  return async () => {
    if (header !== undefined && now() < refreshAt) return header
    pending ??= fetchToken().finally(() => { pending = undefined })
    return await pending
  }
}
