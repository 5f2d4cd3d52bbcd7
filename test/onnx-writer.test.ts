// The project's ONNX writer, read back by onnxruntime: a value's elem_type and Cast's integer `to` attribute, so that
// tests can build models whose tensors are not float32.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../scripts/onnx-writer';
import { mixedTypesGraph, narrowTypesGraph, SHAPED_MODELS, stringsGraph } from './helpers/models';

const typesOf = (metadata: readonly ort.InferenceSession.ValueMetadata[]) =>
  metadata.map((m) => (m.isTensor ? `${m.name}:${m.type}` : `${m.name}:not a tensor`));

describe('ONNX writer', () => {
  it('writes float32 values when no elem_type is given', async () => {
    const session = await ort.InferenceSession.create(encodeModel(SHAPED_MODELS.twoOutputs()));
    try {
      assert.deepEqual(typesOf(session.inputMetadata), ['x:float32']);
      assert.deepEqual(typesOf(session.outputMetadata), ['same:float32', 'plus_one:float32']);
    } finally {
      await session.release();
    }
  });

  it('writes each value with its elem_type, and Cast nodes with an integer `to`', async () => {
    const session = await ort.InferenceSession.create(encodeModel(mixedTypesGraph()));
    try {
      assert.deepEqual(typesOf(session.inputMetadata), ['x:float32', 'k:int64']);
      assert.deepEqual(typesOf(session.outputMetadata), ['y:float64', 'k2:int64']);
      const out = await session.run({
        x: new ort.Tensor('float32', Float32Array.of(0.5, -1.25, 3, 0.1, 2, 4, -8, 16), [2, 4]),
        k: new ort.Tensor('int64', BigInt64Array.of(3n, -2n), [2, 1]),
      });
      assert.equal(out.y.type, 'float64');
      assert.deepEqual([...(out.y.data as Float64Array)], [1.5, -3.75, 9, Math.fround(0.1) * 3, -4, -8, 16, -32]);
      assert.equal(out.k2.type, 'int64');
      assert.deepEqual([...(out.k2.data as BigInt64Array)], [6n, -4n]);
    } finally {
      await session.release();
    }
  });

  it('writes the narrow types: BOOL, UINT8, INT32 and FLOAT16', async () => {
    const session = await ort.InferenceSession.create(encodeModel(narrowTypesGraph()));
    try {
      assert.deepEqual(typesOf(session.inputMetadata), ['b:bool', 'u:uint8', 'i:int32']);
      assert.deepEqual(typesOf(session.outputMetadata), ['nb:bool', 's:int32', 'h:float16']);
      const out = await session.run({
        b: new ort.Tensor('bool', Uint8Array.of(1, 0, 1), [1, 3]),
        u: new ort.Tensor('uint8', Uint8Array.of(0, 7, 255), [1, 3]),
        i: new ort.Tensor('int32', Int32Array.of(-5, 1, 1000), [1, 3]),
      });
      assert.deepEqual([...(out.nb.data as Uint8Array)], [0, 1, 0]);
      assert.deepEqual([...(out.s.data as Int32Array)], [-5, 8, 1255]);
      // float16 bits (onnxruntime-node hands float16 over as Uint16Array): -5, 8 and 1255, all exact.
      assert.deepEqual([...(out.h.data as Uint16Array)], [0xc500, 0x4800, 0x64e7]);
    } finally {
      await session.release();
    }
  });

  it('writes STRING values', async () => {
    const session = await ort.InferenceSession.create(encodeModel(stringsGraph()));
    try {
      assert.deepEqual(typesOf(session.inputMetadata), ['s:string']);
      assert.deepEqual(typesOf(session.outputMetadata), ['echo:string']);
      const out = await session.run({ s: new ort.Tensor('string', ['a', 'ü €'], [1, 2]) });
      assert.deepEqual(out.echo.data, ['a', 'ü €']);
    } finally {
      await session.release();
    }
  });
});
