# tickserve: multi-stage build, non-root runtime, production dependencies only.
# The CPU build of onnxruntime-node is inside its npm package; the .npmrc skips its CUDA download
# (onnxruntime-node-install=skip). For a CUDA image, build FROM an nvidia/cuda base and set
# ONNXRUNTIME_NODE_INSTALL=cuda12 for the npm ci in the runtime stage.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc tsconfig.json ./
RUN npm ci
COPY proto ./proto
COPY src ./src
COPY scripts ./scripts
COPY bench ./bench
COPY test ./test
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/models ./models
COPY proto ./proto
USER node
EXPOSE 50051 9464
# exec form: SIGTERM reaches node directly, which drains within SHUTDOWN_GRACE_MS and exits 0
CMD ["node", "dist/src/main/index.js"]
