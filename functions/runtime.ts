import { currentBackend, describeBackend, initBackend } from '../core/backend.js';
import { createApp } from './app.js';
import { keysFromSecret } from './auth.js';
import type { ServeConfig } from './config.js';
import type { Decoder } from './decoder.js';
import { jsonLogger, type Logger, silentLogger } from './logger.js';
import { ModelHolder, type ModelSource } from './model-holder.js';

export interface Runtime {
  app: ReturnType<typeof createApp>;
  holder: ModelHolder;
  /** Resolves when the backend is up and the first model load has finished (or failed). */
  ready: Promise<void>;
}

/**
 * Wires one serving process: tfjs backend, model holder, API keys and the Hono app. The adapter
 * chooses the decoder (sharp in Node/Lambda, WASM at the edge). The app answers at once (503
 * until the model is in), so a slow model load never blocks health checks.
 */
export function createRuntime(
  config: ServeConfig,
  decode: Decoder,
  opts: { log?: Logger; source?: ModelSource; backendLog?: (line: string) => void } = {},
): Runtime {
  const log = opts.log ?? (config.logLevel === 'silent' ? silentLogger : jsonLogger());
  const holder = new ModelHolder(config.modelUri, { refreshSeconds: config.refreshSeconds, log, source: opts.source });
  let keys: Promise<string[]> | undefined;
  const apiKeys = () => {
    if (config.apiKeys.length > 0 || !config.apiKeysSecretArn) return Promise.resolve(config.apiKeys);
    keys ??= keysFromSecret(config.apiKeysSecretArn).catch((e) => {
      keys = undefined; // retry on the next request
      throw e;
    });
    return keys;
  };
  const backendLog = opts.backendLog ?? ((line: string) => log.info(line));
  const ready = initBackend('auto', backendLog).then(() => holder.start());
  const app = createApp({
    config,
    holder,
    decode,
    log,
    apiKeys,
    backend: () => {
      const b = currentBackend();
      return b ? describeBackend(b) : undefined;
    },
  });
  return { app, holder, ready };
}
