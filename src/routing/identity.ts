// Which version and slice an instance belongs to. Service meta wins because it
// is a key-value field made for this; the tag forms are what Environment
// Manager's deployment agent writes (`version:1.6.0`, `slice:blue`), and the
// `=` form is accepted for people who write tags by hand.

import type { InstanceSnapshot } from './types.js'

export function instanceVersion(instance: InstanceSnapshot): string {
  return instance.meta.version || tagValue(instance.tags, 'version')
}

export function instanceSlice(instance: InstanceSnapshot): string {
  return instance.meta.slice || tagValue(instance.tags, 'slice')
}

function tagValue(tags: readonly string[], name: string): string {
  for (const tag of tags) {
    if (tag.length > name.length + 1 && tag.startsWith(name)) {
      const sep = tag.charCodeAt(name.length)
      if (sep === 58 /* : */ || sep === 61 /* = */) return tag.slice(name.length + 1)
    }
  }
  return ''
}
