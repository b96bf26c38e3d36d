import { edgetuneConfig } from '../config.js';

export interface RetryOptions {
  /** Total attempts, first one included. Default EDGETUNE_S3_ATTEMPTS or 4. */
  attempts?: number;
  /** First backoff delay; doubles each time, with jitter. Default EDGETUNE_S3_BACKOFF_MS or 200. */
  baseMs?: number;
  maxMs?: number;
  /** What is being done, for the error message (e.g. "PutObject s3://b/k"). */
  label: string;
  log?: (line: string) => void;
}

const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'InternalError',
  'ServiceUnavailable',
]);

/** Network failures, throttling and 5xx answers are worth retrying; 4xx answers are not. */
export function isRetryable(e: unknown): boolean {
  const err = e as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; cause?: unknown; message?: string };
  if (!err || typeof err !== 'object') return false;
  const status = err.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 500) return true;
  if (status !== undefined && status >= 400 && status !== 408 && status !== 429) return false;
  if (status === 408 || status === 429) return true;
  if ((err.code && RETRYABLE_CODES.has(err.code)) || (err.name && RETRYABLE_CODES.has(err.name))) return true;
  if (/socket hang up|ECONNREFUSED|ECONNRESET|EPIPE|timed? ?out/i.test(err.message ?? '')) return true;
  return err.cause ? isRetryable(err.cause) : false;
}

export class RetryError extends Error {
  constructor(
    message: string,
    readonly attempts: number,
    readonly cause: unknown,
  ) {
    super(message);
    this.name = 'RetryError';
  }
}

export function errorText(e: unknown): string {
  const err = e as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const msg = err?.message || err?.code || err?.name || String(e);
  const status = err?.$metadata?.httpStatusCode;
  return status ? `${msg} (HTTP ${status})` : msg;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` until it succeeds, retrying transient failures with exponential backoff and jitter.
 * Gives up with a RetryError naming the operation, the attempts and the last cause.
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const config = opts.attempts === undefined || opts.baseMs === undefined ? edgetuneConfig() : undefined;
  const attempts = opts.attempts ?? config?.EDGETUNE_S3_ATTEMPTS ?? 4;
  const base = opts.baseMs ?? config?.EDGETUNE_S3_BACKOFF_MS ?? 200;
  const max = opts.maxMs ?? 5_000;
  let last: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      last = e;
      if (!isRetryable(e)) throw e;
      if (attempt === attempts) break;
      const delay = Math.min(max, base * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      opts.log?.(`retry ${attempt}/${attempts - 1} for ${opts.label} in ${Math.round(delay)} ms: ${errorText(e)}`);
      await sleep(delay);
    }
  }
  throw new RetryError(`${opts.label} failed after ${attempts} attempts: ${errorText(last)}`, attempts, last);
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first failure. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i], i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
