import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createSlab, slabBytes, slabViews } from '../src/batching/slab';

describe('slab layout', () => {
  it('lays each tensor\'s region back to back, without overlap, in one SharedArrayBuffer', () => {
    const layout = { maxBatchRows: 4, inputRowBytes: [17 * 4, 3 * 8], outputRowBytes: [5 * 4, 0] };
    const slab = createSlab(layout);
    assert.ok(slab instanceof SharedArrayBuffer);
    assert.equal(slab.byteLength, slabBytes(layout));
    assert.equal(slabBytes(layout), 4 * (17 * 4 + 3 * 8 + 5 * 4));
    const { inputs, outputs } = slabViews(slab, layout);
    assert.deepEqual(inputs.map((b) => b.length), [4 * 68, 4 * 24]);
    assert.deepEqual(outputs.map((b) => b.length), [4 * 20, 0], 'an output not in the slab has no region');
    inputs[0].fill(1);
    inputs[1].fill(2);
    outputs[0].fill(3);
    assert.ok(inputs[0].every((v) => v === 1), 'a later region overwrote the first');
    assert.ok(inputs[1].every((v) => v === 2));
    assert.deepEqual([inputs[1].byteOffset, outputs[0].byteOffset], [4 * 68, 4 * 68 + 4 * 24]);
  });

  it('views made on two sides see the same memory', () => {
    const layout = { maxBatchRows: 2, inputRowBytes: [12], outputRowBytes: [4] };
    const slab = createSlab(layout);
    slabViews(slab, layout).outputs[0][5] = 42;
    assert.equal(slabViews(slab, layout).outputs[0][5], 42);
  });
});
