// The command lines of `npm run client` and `npm run bench`: node:util parseArgs in strict mode, and every value
// checked before anything connects, with a message that names the option. Both end the same way: a bad command
// line prints `error: <what>` and the usage text and exits 2; --help prints the usage and exits 0; any other failure
// prints `error: <what>` and exits 1.

/** A bad command line. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Runs `parse` (a parseArgs call), turning its errors (an unknown option, a value missing) into UsageErrors. */
export function usageErrors<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    // "Unknown option '--x'." goes on to explain how to pass a positional argument that starts with '-': not what
    // someone who mistyped an option needs.
    throw new UsageError(code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? message.split('. ')[0] : message);
  }
}

const INTEGER = /^\s*[+-]?\d+\s*$/;

/** `text`, the value of `--name`, as an integer of at least `min`. */
export function integerValue(name: string, text: string, min: number): number {
  const value = Number(text);
  if (!INTEGER.test(text) || value < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${text}"`);
  return value;
}

/** `text`, the value of `--name`, as a finite number above a bound (or at least it). */
export function numberValue(name: string, text: string, bound: { above: number } | { atLeast: number }): number {
  const value = text.trim() === '' ? NaN : Number(text);
  const inRange = 'above' in bound ? value > bound.above : value >= bound.atLeast;
  if (!Number.isFinite(value) || !inRange) {
    const range = 'above' in bound ? `> ${bound.above}` : `>= ${bound.atLeast}`;
    throw new UsageError(`--${name} must be a number ${range}, got "${text}"`);
  }
  return value;
}

/** `text`, the value of `--name`, as a comma-separated list, each item read by `item`. */
export function listValue<T>(name: string, text: string, item: (name: string, text: string) => T): T[] {
  return text.split(',').map((part) => item(name, part));
}

/**
 * Runs a command line's `main` and exits with the status it returns: a UsageError prints `error: <what>` and
 * `usage` (status 2), any other failure `error: <describe(error)>` (status 1).
 */
export function runCli(usage: string, main: () => Promise<number>, describe: (error: unknown) => string = describeError): void {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`error: ${error.message}\n\n${usage}\n`);
        process.exit(2);
      }
      process.stderr.write(`error: ${describe(error)}\n`);
      process.exit(1);
    },
  );
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
