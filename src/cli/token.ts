import { type ResolvedConfig, sourceOf } from '../config/load.js'
import { isSendableToken } from '../consul/client.js'
import { ConfigError, TokenFileError } from '../errors.js'

const { readFileSync } = process.getBuiltinModule('node:fs')

const CONTROL_CHARACTER = 'the token has a control character, which an HTTP header cannot carry'

/**
 * The ACL token to use. As in Consul's own client, a token file wins over a
 * token value, so a mounted secret cannot be shadowed by a stale variable.
 */
export function resolveToken(config: ResolvedConfig): string {
  const path = config.consul.tokenFile
  if (!path) {
    const token = config.consul.token
    if (!isSendableToken(token)) {
      throw new ConfigError('consul.token', CONTROL_CHARACTER, sourceOf(config, 'consul.token') ?? undefined)
    }
    return token
  }
  const source = sourceOf(config, 'consul.tokenFile') ?? undefined
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new TokenFileError(path, (err as NodeJS.ErrnoException).code ?? (err as Error).message, source)
  }
  const token = text.trim()
  if (token === '') throw new TokenFileError(path, 'the file is empty', source)
  if (!isSendableToken(token)) throw new TokenFileError(path, CONTROL_CHARACTER, source)
  return token
}
