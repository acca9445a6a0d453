// One-shot reads of everything the table builder needs, for `switchyard
// routes` and the operator's `target set --wait` dry run. Same endpoints and
// parsing as the watchers, without blocking.

import { ConsulPermissionError } from '../errors.js'
import type { CatalogSnapshot, InstanceSnapshot, TargetEntry } from '../routing/types.js'
import { assertPrefixReadable, type ConsulClient, readBody } from './client.js'
import { Interner, parseHealthService, parseKvList, parseServiceList, routedServices } from './normalize.js'

export interface OnceOptions {
  readonly tagPrefix: string
  readonly targetPrefix: string
  readonly stale: boolean
  readonly timeoutMs?: number
}

export async function readSnapshotOnce(
  client: ConsulClient,
  options: OnceOptions,
): Promise<{ catalog: CatalogSnapshot; targets: TargetEntry[] }> {
  const timeoutMs = options.timeoutMs ?? 10_000
  const read = async (path: string, query: Record<string, boolean>, what: string): Promise<string> => {
    const res = await client.get(path, query, { timeoutMs })
    // As in the target watcher: keys hidden by ACLs are targets we cannot honour.
    if (res.filteredByAcl && path.startsWith('/v1/kv/')) {
      throw new ConsulPermissionError(
        path,
        'Permission denied (Consul hid keys this token may not read)',
        what,
      )
    }
    return readBody(path, res, what)
  }
  const kvPath = `/v1/kv/${options.targetPrefix.split('/').map(encodeURIComponent).join('/')}/`
  const [list, kv] = await Promise.all([
    read('/v1/catalog/services', { stale: options.stale }, 'the service catalog'),
    read(kvPath, { recurse: true, stale: options.stale }, `key prefix ${options.targetPrefix}/`),
  ])
  if (kv === '[]') await assertPrefixReadable(client, options.targetPrefix)
  const names = routedServices(parseServiceList(list), options.tagPrefix)
  const services = new Map<string, readonly InstanceSnapshot[]>()
  const interner = new Interner()
  await Promise.all(
    names.map(async (name) => {
      const body = await read(
        `/v1/health/service/${encodeURIComponent(name)}`,
        { stale: options.stale },
        `service ${name}`,
      )
      services.set(name, parseHealthService(body, interner))
    }),
  )
  return { catalog: { services }, targets: parseKvList(kv) }
}
