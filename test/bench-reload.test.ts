// `npm run bench:reload`'s command line and the pure pieces of its report: the section it writes into
// docs/BENCHMARKS.md and the --trace-gc lines it reads. The benchmark itself is measured by running it, never here.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parseGcLine, parseReloadArgs, replaceSection } from '../bench/reload';
import { UsageError } from '../src/client/args';

const CLI = path.join(__dirname, '..', 'bench', 'reload.js');
const run = promisify(execFile);

describe('the reload bench command line', () => {
  it('reads the defaults: 50 cycles, 5 swaps at 1000 messages a second, into docs/BENCHMARKS.md', () => {
    assert.deepEqual(parseReloadArgs([]), {
      command: 'run',
      cycles: 50,
      swaps: 5,
      rate: 1000,
      out: path.resolve(__dirname, '..', '..', 'docs', 'BENCHMARKS.md'),
      traceGc: false,
    });
  });

  it('reads every option', () => {
    assert.deepEqual(parseReloadArgs(['--cycles', '0', '--swaps=2', '--rate', '250.5', '--out', 'x.md', '--trace-gc']), {
      command: 'run',
      cycles: 0,
      swaps: 2,
      rate: 250.5,
      out: path.resolve('x.md'),
      traceGc: true,
    });
    assert.deepEqual(parseReloadArgs(['-h']), { command: 'help' });
  });

  const bad: Array<[string[], RegExp]> = [
    [['--cycles', 'x'], /^--cycles must be an integer >= 0, got "x"$/],
    [['--cycles=-1'], /^--cycles must be an integer >= 0, got "-1"$/],
    [['--swaps', '1.5'], /^--swaps must be an integer >= 0, got "1.5"$/],
    [['--rate', '0'], /^--rate must be a number > 0, got "0"$/],
    [['--cycles', '0', '--swaps', '0'], /^--cycles and --swaps are both 0: nothing to measure$/],
    [['--cycle', '5'], /^Unknown option '--cycle'$/],
    [['5'], /^Unexpected argument '5'/],
  ];
  for (const [args, message] of bad) {
    it(`${args.join(' ')}: a usage error`, () => {
      assert.throws(() => parseReloadArgs(args), (error: unknown) => error instanceof UsageError && message.test(error.message));
    });
  }

  it('--help prints the usage and exits 0; a bad option exits 2 with the error and the usage', async () => {
    assert.match((await run(process.execPath, [CLI, '--help'])).stdout, /^usage: npm run bench:reload -- \[options\]/);
    await assert.rejects(run(process.execPath, [CLI, '--swaps', 'many']), (e: { code: number; stdout: string; stderr: string }) => {
      assert.equal(e.code, 2);
      assert.equal(e.stdout, '');
      assert.ok(e.stderr.startsWith('error: --swaps must be an integer >= 0, got "many"\n\nusage: npm run bench:reload'), e.stderr);
      return true;
    });
  });
});

describe('the reload section of the benchmarks report', () => {
  const document = '# Benchmarks\n\nintro\n\n## Reload under load\n\nold\n\n## Later\n\nkept\n';

  it('replaces the section up to the next level-2 heading, leaving the rest byte for byte', () => {
    assert.equal(
      replaceSection(document, '## Reload under load', '## Reload under load\n\nnew\n'),
      '# Benchmarks\n\nintro\n\n## Reload under load\n\nnew\n\n## Later\n\nkept\n',
    );
  });

  it('replaces a last section up to the end of the file', () => {
    assert.equal(replaceSection('# B\n\n## Reload under load\n\nold\nolder\n', '## Reload under load', '## Reload under load\n\nnew\n'), '# B\n\n## Reload under load\n\nnew\n');
  });

  it('appends the section when there is none, after a blank line', () => {
    assert.equal(replaceSection('# B\n\ntext\n', '## Reload under load', '## Reload under load\n\nnew\n'), '# B\n\ntext\n\n## Reload under load\n\nnew\n');
    assert.equal(replaceSection('', '## Reload under load', '## Reload under load\n'), '## Reload under load\n');
  });

  it('leaves a level-3 heading of the same words, or one inside another section, alone', () => {
    const nested = '# B\n\n## Other\n\n### Reload under load\n\nx\n';
    assert.equal(replaceSection(nested, '## Reload under load', '## Reload under load\n'), `${nested}\n## Reload under load\n`);
  });
});

describe('reading --trace-gc lines', () => {
  it('reads a major GC: isolate, heap before and after, committed, pause', () => {
    const line =
      '[24412:0x18c5ac80]    15387 ms: Mark-Compact 45.3 (78.1) -> 18.9 (71.8) MB, 33.90 / 0.02 ms  (+ 36.4 ms in 34 steps since start of marking, biggest step 1.1 ms) (average mu = 0.99) finalize incremental marking via task; GC in old space requested';
    assert.deepEqual(parseGcLine(line, 7), { at: 7, isolate: '0x18c5ac80', kind: 'Mark-Compact', beforeMiB: 45.3, afterMiB: 18.9, committedMiB: 71.8, pauseMs: 33.9 });
  });

  it('reads a scavenge and a memory-reducing major GC', () => {
    assert.deepEqual(parseGcLine('[1:0x5]       75 ms: Scavenge 4.4 (4.5) -> 3.8 (5.5) MB, 1.47 / 0.00 ms  (average mu = 1.000)', 1), {
      at: 1, isolate: '0x5', kind: 'Scavenge', beforeMiB: 4.4, afterMiB: 3.8, committedMiB: 5.5, pauseMs: 1.47,
    });
    assert.equal(parseGcLine('[1:0x5] 9 ms: Mark-Compact (reduce) 24.3 (38.3) -> 17.7 (20.1) MB, 32.51 / 0.00 ms', 1)?.kind, 'Mark-Compact (reduce)');
  });

  it('ignores every other line', () => {
    assert.equal(parseGcLine('{"level":30,"msg":"model reload version 2 is ready"}', 1), null);
    assert.equal(parseGcLine('[1:0x5] 9 ms: something else', 1), null);
  });
});
