# Build stage: compile TypeScript (and bundle the browser client) with the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.client.json ./
COPY proxy proxy
COPY plugins plugins
COPY client client
COPY config-examples config-examples
COPY test test
COPY bench bench
RUN npm ci --no-audit --no-fund && npm run build

# Runtime stage: production dependencies and compiled output only, as a non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist/proxy dist/proxy
COPY --from=build /src/dist/plugins dist/plugins
COPY --from=build /src/dist/client dist/client
COPY config-examples config-examples
# The node image's `node` user, by number: Kubernetes' runAsNonRoot can only check a numeric user.
USER 1000:1000
# Public port. The control port (8081: push API, metrics, health) listens on loopback by default;
# to expose it, set SWITCHBOARD_CONTROL_LISTEN=0.0.0.0:8081 and SWITCHBOARD_CONTROL_TOKEN.
EXPOSE 8080
# Runs inside the container, where loopback reaches the control port whether it listens on
# 127.0.0.1 or 0.0.0.0; the port follows SWITCHBOARD_CONTROL_LISTEN. /healthz needs no token.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "const port = (process.env.SWITCHBOARD_CONTROL_LISTEN || ':8081').split(':').pop(); fetch('http://127.0.0.1:' + port + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/proxy/cli.js"]
