import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import S3rver from 's3rver';

export const DEFAULT_BUCKET = 'edgetune';
export const DEFAULT_S3_DIR = '.edgetune/s3';

export interface EmbeddedS3 {
  endpoint: string;
  port: number;
  dir: string;
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

/**
 * Starts s3rver (a local S3 implementation storing objects as files in `dir`) in this process.
 * Port 0 picks a free one. The buckets are created when missing; existing data is kept.
 */
export async function startS3rver(
  opts: { port?: number; dir?: string; address?: string; buckets?: string[]; silent?: boolean } = {},
): Promise<EmbeddedS3> {
  const dir = path.resolve(opts.dir ?? DEFAULT_S3_DIR);
  await mkdir(dir, { recursive: true });
  const address = opts.address ?? '127.0.0.1';
  const server = new S3rver({
    address,
    port: opts.port ?? 0,
    directory: dir,
    silent: opts.silent ?? true,
    // Path-style only: bucket names are never taken from the Host header.
    vhostBuckets: false,
    configureBuckets: (opts.buckets ?? [DEFAULT_BUCKET]).map((name) => ({ name })),
  });
  const info = await server.run();
  const host = address === '0.0.0.0' ? '127.0.0.1' : address;
  const endpoint = `http://${host}:${info.port}`;
  let closed = false;
  return {
    endpoint,
    port: info.port,
    dir,
    server,
    async close() {
      if (closed) return;
      closed = true;
      // SDK clients keep sockets alive; without this, close() waits for them to time out.
      server.httpServer?.closeAllConnections?.();
      await server.close();
    },
  };
}
