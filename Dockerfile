# tickserve: multi-stage build, non-root runtime, production dependencies only.
# The CPU build of onnxruntime-node is inside its npm package, so install scripts are skipped (--ignore-scripts:
# no CUDA download, and no `prepare` build before the sources are copied). For a CUDA image, build FROM an
# nvidia/cuda base and run `ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install`
# after the runtime stage's npm ci.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc tsconfig.json ./
RUN npm ci --ignore-scripts
COPY proto ./proto
COPY src ./src
COPY scripts ./scripts
COPY bench ./bench
COPY test ./test
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
# Each model reload starts worker threads, and glibc gives threads malloc arenas of their own that fragment: two
# arenas keep resident memory flat across reloads (npm run bench:reload, docs/BENCHMARKS.md).
ENV MALLOC_ARENA_MAX=2
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/models ./models
COPY proto ./proto
USER node
EXPOSE 50051 9464
# exec form: SIGTERM reaches node directly, which drains within SHUTDOWN_GRACE_MS and exits 0
CMD ["node", "dist/src/main/index.js"]
