// The fine timer (sub-millisecond waits on a sleeping thread): never early, in due order, cleared timers never
// fire, and waiting costs the main thread next to no CPU (the batcher used to poll such waits with setImmediate).
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { clearFine, fineTimerThread, setFine } from '../src/batching/fine-timer';
import { systemClock } from '../src/batching/clock';

const waitFine = (ms: number) =>
  new Promise<number>((resolve) => {
    const started = performance.now();
    setFine(() => resolve(performance.now() - started), ms);
  });

describe('fine timer', () => {
  it('fires sub-millisecond timers never early, in due order, and not those cleared', async () => {
    await waitFine(0.1); // the thread starts on first use (tens of ms): not what is measured here
    const fired: string[] = [];
    const started = performance.now();
    const at: Record<string, number> = {};
    const mark = (name: string) => () => {
      fired.push(name);
      at[name] = performance.now() - started;
    };
    setFine(mark('late'), 0.9);
    const cleared = setFine(mark('cleared'), 0.3);
    setFine(mark('early'), 0.2);
    clearFine(cleared);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(fired, ['early', 'late']);
    assert.ok(at.early >= 0.2 && at.late >= 0.9, JSON.stringify(at));
  });

  it('a timer armed on a thread that dies still fires, on a new thread', async () => {
    const fired = new Promise<number>((resolve) => setFine(() => resolve(performance.now()), 100));
    const thread = fineTimerThread();
    assert.ok(thread !== null);
    await thread.terminate();
    let bound: NodeJS.Timeout | undefined;
    const late = new Promise<'never'>((resolve) => (bound = setTimeout(() => resolve('never'), 2000)));
    const outcome = await Promise.race([fired, late]);
    clearTimeout(bound);
    assert.notEqual(outcome, 'never', 'the timer did not fire after its thread died');
    assert.ok(fineTimerThread() !== null && fineTimerThread() !== thread, 'no new thread');
  });

  it('sleeps while it waits: 200 waits of 0.3 ms cost the main thread far less CPU than their wall time', async () => {
    await waitFine(0.3); // the thread starts on first use
    const cpu = process.cpuUsage();
    const started = performance.now();
    for (let i = 0; i < 200; i++) assert.ok((await waitFine(0.3)) >= 0.3);
    const wallUs = (performance.now() - started) * 1000;
    const { user, system } = process.cpuUsage(cpu);
    // Polling would burn the whole wall time on the main thread; each wake-up here costs a few µs of it (the
    // thread's own futex wait is counted too, as process CPU, but is not a spin either).
    assert.ok(user + system < 0.6 * wallUs, `CPU ${user + system} µs over ${wallUs.toFixed(0)} µs of waiting`);
  });

  it("the system clock uses it below a millisecond and Node's timers from one", async () => {
    const started = performance.now();
    await new Promise<void>((resolve) => systemClock.setTimer(resolve, 0.25));
    assert.ok(performance.now() - started >= 0.25);
    const handle = systemClock.setTimer(() => assert.fail('a cleared timer fired'), 0.1);
    const long = systemClock.setTimer(() => assert.fail('a cleared timer fired'), 5);
    // Which timer each went on: the fine one below a millisecond, Node's from one.
    assert.equal((handle as { fine: boolean }).fine, true);
    assert.equal((long as { fine: boolean }).fine, false);
    systemClock.clearTimer(handle);
    systemClock.clearTimer(long);
    await new Promise((resolve) => setTimeout(resolve, 10));
  });
});
