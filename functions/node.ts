import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { serve } from '@hono/node-server';
import { configFromEnv, type ServeConfig } from './config.js';
import { sharpDecoder } from './decoder.js';
import type { Logger } from './logger.js';
import { createRuntime, type Runtime } from './runtime.js';

/** Slow-client and connection limits of the Node server (Node's own defaults: 60 s headers, 300 s per request, no cap). */
export interface ServerLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
}
export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
};

export const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);

export interface NodeServer extends Runtime {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Starts the API on Node (sharp decoder). `port: 0` picks a free port. */
export async function startNodeServer(
  opts: {
    config?: ServeConfig;
    port?: number;
    hostname?: string;
    log?: Logger;
    waitForModel?: boolean;
    limits?: Partial<ServerLimits>;
    /** Keep libvips' SVG loader (default true: `edgetune start` renders its training report from SVG in this process). */
    svgLoader?: boolean;
  } = {},
): Promise<NodeServer> {
  const config = opts.config ?? configFromEnv();
  // Requests never reach the SVG loader either way: the header check refuses SVG first.
  const decoder = sharpDecoder({ svg: opts.svgLoader ?? true });
  const rt = createRuntime(config, decoder.decode, { log: opts.log });
  await decoder.load();
  const hostname = opts.hostname ?? '127.0.0.1';
  const limits = { ...DEFAULT_SERVER_LIMITS, ...opts.limits };
  const server = serve({
    fetch: rt.app.fetch,
    port: opts.port ?? 3000,
    hostname,
    // How often Node checks the two timeouts below (its default, 30 s, would let a slow client stay 30 s longer).
    serverOptions: { connectionsCheckingInterval: Math.max(50, Math.min(1000, limits.requestTimeoutMs / 4, limits.headersTimeoutMs / 4)) },
  });
  const http = server as unknown as import('node:http').Server;
  http.headersTimeout = limits.headersTimeoutMs;
  http.requestTimeout = limits.requestTimeoutMs;
  http.keepAliveTimeout = limits.keepAliveTimeoutMs;
  http.maxConnections = limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve();
    server.once('listening', () => resolve());
    server.once('error', reject);
  });
  if (opts.waitForModel) await rt.ready;
  const port = (server.address() as AddressInfo).port;
  return {
    ...rt,
    port,
    url: `http://${hostname === '0.0.0.0' ? '127.0.0.1' : hostname}:${port}`,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive sockets would otherwise hold close() open for seconds.
        (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
      });
      await rt.holder.settle();
      rt.holder.dispose();
    },
  };
}

// `node dist/functions/node/index.mjs` (or `tsx functions/node.ts`) runs the server from env vars.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000);
  const hostname = process.env.HOST || '127.0.0.1';
  const s = await startNodeServer({ port, hostname, svgLoader: false });
  process.stderr.write(`edgetune: listening on ${s.url}\n`);
  const env = process.env;
  if (!isLoopback(hostname) && !env.API_KEYS && !env.API_KEYS_FILE && !env.API_KEYS_SECRET_ARN) {
    process.stderr.write(`edgetune: WARNING: listening on ${hostname} without API keys: anyone who can reach it can use the API\n`);
  }
}
