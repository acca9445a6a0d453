// What a test does to Consul, with the management token (never the proxy's):
// register instances with TTL checks, flip them, maintenance, KV writes.

import type { ConsulInfo } from './agent.js'

export interface InstanceSpec {
  readonly id: string
  readonly name: string
  readonly port: number
  readonly address?: string
  readonly tags?: readonly string[]
  readonly meta?: Record<string, string>
  /** Initial status of the instance's TTL check; default passing. */
  readonly status?: 'passing' | 'warning' | 'critical'
  /** An HTTP check URL instead of the TTL check (Consul polls it every `interval`). */
  readonly httpCheck?: { readonly url: string; readonly interval: string }
}

export class ConsulApi {
  readonly info: ConsulInfo
  private readonly token: string

  constructor(info: ConsulInfo, token = info.managementToken) {
    this.info = info
    this.token = token
  }

  async call(method: string, path: string, body?: unknown): Promise<Response> {
    return fetch(`${this.info.address}${path}`, {
      method,
      headers: { 'x-consul-token': this.token },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    })
  }

  private async ok(method: string, path: string, body?: unknown): Promise<string> {
    const res = await this.call(method, path, body)
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
    return text
  }

  async register(spec: InstanceSpec): Promise<void> {
    await this.ok('PUT', '/v1/agent/service/register', {
      ID: spec.id,
      Name: spec.name,
      Address: spec.address ?? '127.0.0.1',
      Port: spec.port,
      Tags: spec.tags ?? [],
      Meta: spec.meta ?? {},
      Check: spec.httpCheck
        ? {
            CheckID: checkId(spec.id),
            Name: `${spec.id} http`,
            HTTP: spec.httpCheck.url,
            Interval: spec.httpCheck.interval,
          }
        : { CheckID: checkId(spec.id), Name: `${spec.id} ttl`, TTL: '24h', Status: spec.status ?? 'passing' },
    })
  }

  async deregister(id: string): Promise<void> {
    await this.ok('PUT', `/v1/agent/service/deregister/${encodeURIComponent(id)}`)
  }

  async setCheck(id: string, status: 'passing' | 'warning' | 'critical'): Promise<void> {
    const verb = status === 'passing' ? 'pass' : status === 'warning' ? 'warn' : 'fail'
    await this.ok('PUT', `/v1/agent/check/${verb}/${encodeURIComponent(checkId(id))}`)
  }

  async maintenance(id: string, enable: boolean): Promise<void> {
    await this.ok(
      'PUT',
      `/v1/agent/service/maintenance/${encodeURIComponent(id)}?enable=${enable}&reason=test`,
    )
  }

  async kvPut(key: string, value: string): Promise<void> {
    await this.ok('PUT', `/v1/kv/${key}`, value)
  }

  async kvDelete(key: string): Promise<void> {
    await this.ok('DELETE', `/v1/kv/${key}`)
  }

  /** Creates a policy with these HCL rules and a token holding only it. */
  async createToken(
    name: string,
    rules: string,
  ): Promise<{ policyId: string; accessor: string; secret: string }> {
    const policy = JSON.parse(await this.ok('PUT', '/v1/acl/policy', { Name: name, Rules: rules })) as {
      ID: string
    }
    const token = JSON.parse(
      await this.ok('PUT', '/v1/acl/token', { Description: name, Policies: [{ ID: policy.ID }] }),
    ) as {
      AccessorID: string
      SecretID: string
    }
    return { policyId: policy.ID, accessor: token.AccessorID, secret: token.SecretID }
  }

  async deleteToken(accessor: string): Promise<void> {
    await this.ok('DELETE', `/v1/acl/token/${accessor}`)
  }
}

function checkId(serviceId: string): string {
  return `ttl-${serviceId}`
}
