# syntax=docker/dockerfile:1
# Switchyard container image.
#   docker build -t switchyard .
#   docker run -e CONSUL_HTTP_ADDR=consul:8500 -e CONSUL_HTTP_TOKEN_FILE=/run/secrets/switchyard-token \
#     -p 9999:9999 -p 9998:9998 switchyard
# Every step below is also run, without Docker, by scripts/image-check (part of `npm test`):
# the same build script, the same pruned tree, the same start and health-check commands.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY scripts/image-build ./scripts/image-build
COPY src ./src
RUN bash scripts/image-build

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    SWITCHYARD_ADMIN_LISTEN=0.0.0.0:9998
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config ./config
USER node
EXPOSE 9999 9998
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["node", "dist/cli/main.js", "healthcheck"]
# --max-semi-space-size=2: Node 24 lets V8's young generation grow to 32 MiB
# semi-spaces, which a proxy's steady allocation fills and keeps resident:
# 2 MiB cuts RSS by about 85 MiB at 1,000 services x 10 instances for no
# measurable throughput (docs/performance.md). --no-maglev: V8's mid-tier
# compiler keeps code and compiler memory a long-running proxy does not need
# (the optimising compiler still runs): 133 vs 146 MB RSS under small-request
# load, 146 vs 189 MB at 1,000 connections, the same req/s and CPU per request
# in the same run (bench/results/flag-no-maglev.md); 7 MiB at 1,000 x 10
# (bench/results/memory.md).
# Workers inherit the flags.
ENTRYPOINT ["node", "--max-semi-space-size=2", "--no-maglev", "dist/cli/main.js"]
CMD ["serve", "--config", "config/switchyard.yaml"]
