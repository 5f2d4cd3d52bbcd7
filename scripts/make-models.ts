// Writes the embedded models into models/: `default.onnx`, served by `npm start`, and `heavy.onnx`, a
// compute-bound model for benchmarks. Both are seeded, so every machine builds byte-identical files.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { encodeModel, mlpGraph, type MlpSpec } from './onnx-writer';

export const MODELS_DIR = path.resolve(__dirname, '..', '..', 'models');

export const DEFAULT_MODEL: MlpSpec = {
  name: 'tick-classifier',
  doc: '17 market features of a tick -> probabilities of 5 classes (strong sell .. strong buy)',
  inputShape: [17],
  hidden: [48, 48],
  outputs: 5,
  softmax: true,
  seed: 17,
};

export const HEAVY_MODEL: MlpSpec = {
  name: 'heavy-mlp',
  doc: '256 features -> 3 hidden layers of 1024 -> 16 scores; ~4.5 MFLOP a row, for compute-bound benchmarks',
  inputShape: [256],
  hidden: [1024, 1024, 1024],
  outputs: 16,
  softmax: false,
  seed: 256,
};

function main(): void {
  mkdirSync(MODELS_DIR, { recursive: true });
  for (const [file, spec] of [['default.onnx', DEFAULT_MODEL], ['heavy.onnx', HEAVY_MODEL]] as const) {
    writeFileSync(path.join(MODELS_DIR, file), encodeModel(mlpGraph(spec)));
  }
}

if (require.main === module) main();
