// The version `switchyard --version` prints. The single executable is one
// bundled file with no package.json beside it, so the bundler writes the
// version in (scripts/package defines SWITCHYARD_BUNDLED_VERSION); everywhere
// else (the clone, the npm tarball, the image) package.json is one folder up
// from this module, in src/ and in dist/ alike.

const { readFileSync } = process.getBuiltinModule('node:fs')

declare const SWITCHYARD_BUNDLED_VERSION: string | undefined

export function switchyardVersion(): string {
  if (typeof SWITCHYARD_BUNDLED_VERSION === 'string') return SWITCHYARD_BUNDLED_VERSION
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
  return pkg.version
}
