// Deployment files that cannot be run here (no Docker engine, no Collector or Jaeger binary): parsed and checked
// against the server's own configuration, so that they stay true to it.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../src/main/config';

const ROOT = path.join(__dirname, '..', '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

describe('otel-collector.yaml', () => {
  const config = parse(read('otel-collector.yaml'));

  it('receives OTLP on gRPC 4317 and HTTP 4318', () => {
    assert.equal(config.receivers.otlp.protocols.grpc.endpoint, '0.0.0.0:4317');
    assert.equal(config.receivers.otlp.protocols.http.endpoint, '0.0.0.0:4318');
  });

  it('sends traces through memory_limiter then batch to Jaeger over OTLP and to debug', () => {
    const traces = config.service.pipelines.traces;
    assert.deepEqual(traces.receivers, ['otlp']);
    assert.deepEqual(traces.processors, ['memory_limiter', 'batch']);
    assert.deepEqual(traces.exporters, ['otlp/jaeger', 'debug']);
    assert.match(config.exporters['otlp/jaeger'].endpoint, /^jaeger:4317$/);
  });

  it('scrapes the server\'s metrics port and also takes OTLP metrics', () => {
    const metrics = config.service.pipelines.metrics;
    assert.deepEqual(metrics.receivers, ['otlp', 'prometheus']);
    const targets = config.receivers.prometheus.config.scrape_configs[0].static_configs[0].targets;
    assert.deepEqual(targets, [`tickserve:${loadConfig({}).metricsPort}`]);
    assert.ok(metrics.exporters.includes('debug'));
  });

  it('every component a pipeline names is defined', () => {
    for (const pipeline of Object.values(config.service.pipelines) as Array<Record<string, string[]>>) {
      for (const r of pipeline.receivers) assert.ok(r in config.receivers, r);
      for (const p of pipeline.processors) assert.ok(p in config.processors, p);
      for (const e of pipeline.exporters) assert.ok(e in config.exporters, e);
    }
  });
});

describe('deploy/docker-compose.yml', () => {
  const compose = parse(read('deploy/docker-compose.yml'));

  it('runs the server with the collector and Jaeger, on the server\'s ports', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['jaeger', 'otel-collector', 'tickserve']);
    const defaults = loadConfig({});
    assert.ok(compose.services.tickserve.ports.includes(`${defaults.port}:${defaults.port}`));
    assert.ok(compose.services.tickserve.ports.includes(`${defaults.metricsPort}:${defaults.metricsPort}`));
    assert.ok(compose.services.jaeger.ports.includes('16686:16686'));
  });

  it('configures the server only with variables it accepts, exporting to the collector', () => {
    const env = compose.services.tickserve.environment;
    // The repository folder is the container's (a bind mount); here a temporary folder stands in for it.
    const config = loadConfig({ ...env, MODEL_REPOSITORY: mkdtempSync(path.join(tmpdir(), 'tickserve-repo-')) });
    assert.ok(compose.services.tickserve.volumes.includes(`./model-repository:${env.MODEL_REPOSITORY}:ro`));
    assert.equal(config.modelControlMode, 'poll');
    assert.equal(config.tracing, true);
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://otel-collector:4317');
  });

  it('gives the server longer to stop than its own drain grace', () => {
    const env = compose.services.tickserve.environment;
    const graceS = Number(compose.services.tickserve.stop_grace_period.replace('s', ''));
    assert.ok(graceS * 1000 > Number(env.SHUTDOWN_GRACE_MS));
  });
});

describe('deploy/kubernetes', () => {
  const load = (file: string) => parse(read(`deploy/kubernetes/${file}`));
  const configMap = load('configmap.yaml');
  const deployment = load('deployment.yaml');
  const container = deployment.spec.template.spec.containers[0];
  // The repository folder exists only in the pod; here a temporary folder stands in for it.
  const config = loadConfig({ ...configMap.data, MODEL_REPOSITORY: mkdtempSync(path.join(tmpdir(), 'tickserve-repo-')) });

  it('kustomization lists every manifest', () => {
    assert.deepEqual(load('kustomization.yaml').resources.sort(), ['configmap.yaml', 'deployment.yaml', 'hpa.yaml', 'pdb.yaml', 'pvc.yaml', 'service.yaml']);
  });

  it('mounts the model repository read-only where MODEL_REPOSITORY points, from the PVC, polled for new versions', () => {
    const mount = container.volumeMounts.find((m: { name: string }) => m.name === 'model-repository');
    assert.deepEqual(mount, { name: 'model-repository', mountPath: configMap.data.MODEL_REPOSITORY, readOnly: true });
    const volume = deployment.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'model-repository');
    assert.equal(volume.persistentVolumeClaim.claimName, load('pvc.yaml').metadata.name);
    assert.equal(config.modelControlMode, 'poll');
  });

  it('the ConfigMap holds only values the server accepts, and the Deployment takes its env from it', () => {
    assert.equal(container.envFrom[0].configMapRef.name, configMap.metadata.name);
    assert.equal(config.port, 50051);
    assert.equal(config.tracing, true);
  });

  it('names the gRPC and metrics ports the config sets', () => {
    const ports = Object.fromEntries(container.ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]));
    assert.deepEqual(ports, { grpc: config.port, metrics: config.metricsPort });
  });

  it('probes grpc.health.v1 on the gRPC port: readiness for inference.ModelService, liveness for the server', () => {
    assert.deepEqual(container.readinessProbe.grpc, { port: config.port, service: 'inference.ModelService' });
    assert.deepEqual(container.livenessProbe.grpc, { port: config.port, service: '' });
    assert.equal(container.startupProbe.grpc.port, config.port);
  });

  it('sets resource requests and limits', () => {
    assert.ok(container.resources.requests.cpu && container.resources.requests.memory);
    assert.ok(container.resources.limits.cpu && container.resources.limits.memory);
  });

  it('lets the drain finish: termination grace > preStop pause + SHUTDOWN_GRACE_MS', () => {
    const preStopS = Number(container.lifecycle.preStop.exec.command[1]);
    assert.ok(deployment.spec.template.spec.terminationGracePeriodSeconds > preStopS + config.shutdownGraceMs / 1000);
  });

  it('a headless Service on the gRPC port selects the pods', () => {
    const service = load('service.yaml');
    assert.equal(service.spec.clusterIP, 'None');
    assert.deepEqual(service.spec.selector, deployment.spec.selector.matchLabels);
    assert.ok(service.spec.ports.some((p: { port: number; appProtocol: string }) => p.port === config.port && p.appProtocol === 'grpc'));
  });

  it('the PodDisruptionBudget and the HorizontalPodAutoscaler point at the Deployment', () => {
    const pdb = load('pdb.yaml');
    const hpa = load('hpa.yaml');
    assert.deepEqual(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
    assert.ok(pdb.spec.minAvailable < deployment.spec.replicas);
    assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
    assert.ok(hpa.spec.minReplicas >= pdb.spec.minAvailable);
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const pkg = JSON.parse(read('package.json'));

  it('is multi-stage and runs as a non-root user with production dependencies only', () => {
    assert.equal(dockerfile.match(/^FROM /gm)?.length, 2);
    assert.match(dockerfile, /^USER node$/m);
    assert.match(dockerfile, /npm ci --omit=dev/);
  });

  it('starts the server the way `npm start` does, and exposes its ports', () => {
    const cmd = JSON.parse(/^CMD (.+)$/m.exec(dockerfile)![1]).join(' ');
    // npm's script shell exec's node (so that signals reach the server); the image runs node itself.
    assert.equal(`exec ${cmd}`, pkg.scripts.start);
    const defaults = loadConfig({});
    assert.match(dockerfile, new RegExp(`^EXPOSE ${defaults.port} ${defaults.metricsPort}$`, 'm'));
  });

  it('keeps the ONNX Runtime install flag: the .npmrc it copies skips the CUDA download', () => {
    assert.match(dockerfile, /COPY package\.json package-lock\.json \.npmrc/);
    assert.match(read('.npmrc'), /^onnxruntime-node-install=skip$/m);
  });

  it('builds with the README\'s commands: npm ci, then the build that npm start runs first', () => {
    assert.match(dockerfile, /RUN npm ci --ignore-scripts\n/);
    assert.match(dockerfile, /RUN npm run build/);
    assert.equal(pkg.scripts.prestart, 'npm run build --silent');
  });
});
