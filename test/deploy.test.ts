// Deployment files that cannot be run here (no Docker engine, no Collector or Jaeger binary): parsed and checked
// against the server's own configuration, so that they stay true to it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
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
    const config = loadConfig(env);
    assert.equal(config.tracing, true);
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://otel-collector:4317');
  });

  it('gives the server longer to stop than its own drain grace', () => {
    const env = compose.services.tickserve.environment;
    const graceS = Number(compose.services.tickserve.stop_grace_period.replace('s', ''));
    assert.ok(graceS * 1000 > Number(env.SHUTDOWN_GRACE_MS));
  });
});
