// KV reads and writes for the operator's target commands. Writes are
// check-and-set on ModifyIndex, so two operators (or pipelines) cannot
// overwrite each other without noticing. The proxy itself never calls these.

import { ConsulHttpError, SwitchyardError } from '../errors.js'
import type { ConsulClient } from './client.js'

export interface KvEntry {
  readonly key: string
  /** Decoded value; null when the key does not exist. */
  readonly value: string | null
  /** 0 when the key does not exist (a CAS with 0 creates only). */
  readonly modifyIndex: number
}

function kvPath(key: string): string {
  return `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`
}

export async function readKey(client: ConsulClient, key: string): Promise<KvEntry> {
  const path = kvPath(key)
  const res = await client.get(path, {}, { timeoutMs: 10_000 })
  if (res.status === 404) return { key, value: null, modifyIndex: 0 }
  if (res.status === 403) {
    throw new SwitchyardError(
      'SWY_ERR_CONSUL_PERMISSION',
      `token cannot read ${key}: 403 ${res.body.trim() || 'Permission denied'}`,
    )
  }
  if (res.status !== 200) throw new ConsulHttpError(path, res.status, res.body)
  const [entry] = JSON.parse(res.body) as { Value: string | null; ModifyIndex: number }[]
  return {
    key,
    value: entry?.Value ? Buffer.from(entry.Value, 'base64').toString('utf8') : '',
    modifyIndex: entry?.ModifyIndex ?? 0,
  }
}

/** Writes `value` only if the key is still at `modifyIndex` (0: only if absent). */
export async function writeKeyCas(
  client: ConsulClient,
  key: string,
  value: string,
  modifyIndex: number,
): Promise<void> {
  const res = await client.put(kvPath(key), { cas: modifyIndex }, value, { timeoutMs: 10_000 })
  if (res.status === 403) {
    throw new SwitchyardError(
      'SWY_ERR_TARGET_WRITE',
      `token cannot write ${key}: 403 ${res.body.trim() || 'Permission denied'} (use an operator token: config/acl/switchyard-operator.hcl)`,
    )
  }
  if (res.status !== 200) throw new ConsulHttpError(kvPath(key), res.status, res.body, 'SWY_ERR_TARGET_WRITE')
  if (res.body.trim() !== 'true') {
    throw new SwitchyardError(
      'SWY_ERR_TARGET_WRITE',
      `${key} changed since it was read (modify index ${modifyIndex}): someone else set it; read it again and retry`,
    )
  }
}

export async function deleteKeyCas(client: ConsulClient, key: string, modifyIndex: number): Promise<void> {
  const res = await client.send('DELETE', kvPath(key), { cas: modifyIndex }, undefined, { timeoutMs: 10_000 })
  if (res.status === 403) {
    throw new SwitchyardError(
      'SWY_ERR_TARGET_WRITE',
      `token cannot delete ${key}: 403 ${res.body.trim() || 'Permission denied'}`,
    )
  }
  if (res.status !== 200) throw new ConsulHttpError(kvPath(key), res.status, res.body, 'SWY_ERR_TARGET_WRITE')
  if (res.body.trim() !== 'true') {
    throw new SwitchyardError(
      'SWY_ERR_TARGET_WRITE',
      `${key} changed since it was read: someone else set it; read it again and retry`,
    )
  }
}
