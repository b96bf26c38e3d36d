import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type S3rver from 's3rver';
import { createGuardHandler } from './guard.js';
import type { S3Credentials } from './sigv4-verify.js';

export type { S3Credentials } from './sigv4-verify.js';

export const DEFAULT_BUCKET = 'edgetune';
export const DEFAULT_S3_DIR = '.edgetune/s3';
export const ACCESS_KEY_ENV = 'EDGETUNE_S3_ACCESS_KEY_ID';
export const SECRET_KEY_ENV = 'EDGETUNE_S3_SECRET_ACCESS_KEY';

export interface EmbeddedS3 {
  endpoint: string;
  port: number;
  dir: string;
  /** The key pair every request must be signed with. */
  credentials: S3Credentials;
  server: S3rver;
  close(): Promise<void>;
}

/** Asks the OS for a free TCP port on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

let generated: S3Credentials | undefined;
/** Endpoint -> key pair of each embedded S3 this process started (the clients sign with it; kept after close, so a stopped server reads as unreachable, not unauthorised). */
const started = new Map<string, S3Credentials>();

/**
 * This run's key pair for the embedded S3: EDGETUNE_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY when set
 * (a child process of the run, or `edgetune s3` told which to use), else one generated per process.
 * The environment is never written: child processes get the pair from s3ChildEnv().
 */
export function runCredentials(env: NodeJS.ProcessEnv = process.env): S3Credentials {
  const accessKeyId = env[ACCESS_KEY_ENV];
  const secretAccessKey = env[SECRET_KEY_ENV];
  if (accessKeyId && secretAccessKey) return { accessKeyId, secretAccessKey };
  generated ??= {
    accessKeyId: `EDGETUNE${randomBytes(6).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64url'),
  };
  return generated;
}

/** The key pair of an embedded S3 this process runs at `endpoint`, if any. */
export function startedCredentials(endpoint: string): S3Credentials | undefined {
  return started.get(endpoint);
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * Starts s3rver (a local S3 implementation storing objects as files in `dir`) in this process,
 * behind a guard (./guard.ts): s3rver itself listens only on a unix socket in a private temp
 * folder, and the one TCP listener, on loopback, forwards a request only after checking its Host,
 * its lack of Origin, its key for `..` segments, and its SigV4 signature and body hash against this
 * run's credentials. Port 0 picks a free one. The buckets are created when missing; data is kept.
 */
export async function startS3rver(
  opts: {
    port?: number;
    dir?: string;
    address?: string;
    buckets?: string[];
    silent?: boolean;
    credentials?: S3Credentials;
    maxBodyBytes?: number;
  } = {},
): Promise<EmbeddedS3> {
  const dir = path.resolve(opts.dir ?? DEFAULT_S3_DIR);
  await mkdir(dir, { recursive: true });
  const address = opts.address ?? '127.0.0.1';
  if (!LOOPBACK.has(address)) throw new Error(`the embedded S3 listens on loopback only (127.0.0.1, ::1, localhost), not ${address}`);
  const credentials = opts.credentials ?? runCredentials();
  const sockDir = await mkdtemp(path.join(os.tmpdir(), 'edgetune-s3-'));
  const socketPath = path.join(sockDir, 's3rver.sock');
  // Loaded here, not at import: s3rver and Koa cost ~0.2 s of start-up in every CLI process that
  // reaches core/s3/client.ts for a real S3.
  const { default: S3rverClass } = await import('s3rver');
  const server = new S3rverClass({
    directory: dir,
    silent: opts.silent ?? true,
    // Path-style only: bucket names are never taken from the Host header.
    vhostBuckets: false,
    configureBuckets: (opts.buckets ?? [DEFAULT_BUCKET]).map((name) => ({ name })),
  });
  await server.configureBuckets();
  const backend = await server.listen(socketPath);
  server.httpServer = backend;
  let port = 0;
  const hostName = address === '::1' ? '[::1]' : address;
  const front = http.createServer(
    createGuardHandler({
      credentials,
      upstreamSocket: socketPath,
      maxBodyBytes: opts.maxBodyBytes,
      allowedHosts: () => [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`],
    }),
  );
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(opts.port ?? 0, address, () => resolve());
  });
  port = (front.address() as net.AddressInfo).port;
  const endpoint = `http://${hostName}:${port}`;
  started.set(endpoint, credentials);
  let closed = false;
  return {
    endpoint,
    port,
    dir,
    credentials,
    server,
    async close() {
      if (closed) return;
      closed = true;
      // SDK clients keep sockets alive; without this, close() waits for them to time out.
      front.closeAllConnections();
      backend.closeAllConnections?.();
      await Promise.all([new Promise((r) => front.close(() => r(undefined))), server.close()]);
      await rm(sockDir, { recursive: true, force: true });
    },
  };
}
