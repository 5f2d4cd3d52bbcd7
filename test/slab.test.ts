import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createSlab, slabBytes, slabViews } from '../src/batching/slab';

describe('slab layout', () => {
  it('lays the input and output regions back to back, without overlap, in one SharedArrayBuffer', () => {
    const layout = { maxBatchRows: 4, inputWidth: 17, outputWidth: 5 };
    const slab = createSlab(layout);
    assert.ok(slab instanceof SharedArrayBuffer);
    assert.equal(slab.byteLength, slabBytes(layout));
    assert.equal(slabBytes(layout), 4 * (17 + 5) * 4);
    const { input, output } = slabViews(slab, layout);
    assert.equal(input.length, 4 * 17);
    assert.equal(output.length, 4 * 5);
    input.fill(1);
    output.fill(2);
    assert.ok(input.every((v) => v === 1), 'output region overwrote the input region');
    assert.equal(output.byteOffset, input.byteLength);
  });

  it('views made on two sides see the same memory', () => {
    const layout = { maxBatchRows: 2, inputWidth: 3, outputWidth: 1 };
    const slab = createSlab(layout);
    slabViews(slab, layout).output[1] = 42;
    assert.equal(slabViews(slab, layout).output[1], 42);
  });
});
