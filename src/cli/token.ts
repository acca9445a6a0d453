import { type ResolvedConfig, sourceOf } from '../config/load.js'
import { TokenFileError } from '../errors.js'

const { readFileSync } = process.getBuiltinModule('node:fs')

/**
 * The ACL token to use. As in Consul's own client, a token file wins over a
 * token value, so a mounted secret cannot be shadowed by a stale variable.
 */
export function resolveToken(config: ResolvedConfig): string {
  const path = config.consul.tokenFile
  if (!path) return config.consul.token
  const source = sourceOf(config, 'consul.tokenFile') ?? undefined
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new TokenFileError(path, (err as NodeJS.ErrnoException).code ?? (err as Error).message, source)
  }
  const token = text.trim()
  if (token === '') throw new TokenFileError(path, 'the file is empty', source)
  return token
}
