import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { serve } from '@hono/node-server';
import { decodeImage } from '../core/image.js';
import { configFromEnv, type ServeConfig } from './config.js';
import type { Logger } from './logger.js';
import { createRuntime, type Runtime } from './runtime.js';

export interface NodeServer extends Runtime {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Starts the API on Node (sharp decoder). `port: 0` picks a free port. */
export async function startNodeServer(
  opts: { config?: ServeConfig; port?: number; hostname?: string; log?: Logger; waitForModel?: boolean } = {},
): Promise<NodeServer> {
  const config = opts.config ?? configFromEnv();
  const rt = createRuntime(config, decodeImage, { log: opts.log });
  const hostname = opts.hostname ?? '0.0.0.0';
  const server = serve({ fetch: rt.app.fetch, port: opts.port ?? 3000, hostname });
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
  const s = await startNodeServer({ port });
  process.stderr.write(`edgetune: listening on ${s.url}\n`);
}
