// A full garbage collection on request, for the one moment it pays: after a model version has unloaded. Its workers'
// native memory (onnxruntime sessions and their arenas) is released only once the main thread's handles to those
// threads are collected; V8 does not see that memory, so nothing prompts the collection, and resident memory climbs
// by about a megabyte per reload until a full collection happens to run (bench:reload). Reloads are rare, and the
// pause (10–30 ms with tickserve's small heap) comes after the swap and the drain, not on them.
import v8 from 'node:v8';
import vm from 'node:vm';

let collect: (() => void) | null = null;

/** Runs a full collection; the first call enables it (V8's flag, then `gc` from a fresh context). */
export function collectGarbage(): void {
  if (collect === null) {
    v8.setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as () => void;
  }
  collect();
}
