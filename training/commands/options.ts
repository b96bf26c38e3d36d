import { InvalidArgumentError } from 'commander';

export function num(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number; got '${v}'`);
    return n;
  };
}

export function int(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer; got '${v}'`);
    return n;
  };
}

/** Runs a command body; a thrown error becomes one clear line and exit code 1, not a stack trace. */
export async function run(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`edgetune: ${err.message}\n`);
    if (process.env.EDGETUNE_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}
