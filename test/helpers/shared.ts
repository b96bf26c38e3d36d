import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** `../shared` beside the repository: real weights and the alpaca photos, read in place. */
export const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHARED_DIR = process.env.EDGETUNE_SHARED_DIR ?? path.resolve(REPO_DIR, '../shared');
export const ALPACA_DIR = path.join(SHARED_DIR, 'datasets/alpaca');
export const WEIGHTS_1_0 = path.join(SHARED_DIR, 'weights/mobilenet_v2_1.0_224_imagenet/model.json');
export const WEIGHTS_0_35 = path.join(SHARED_DIR, 'weights/mobilenet_v2_0.35_224_imagenet/model.json');

export const hasAlpaca = existsSync(path.join(ALPACA_DIR, 'alpaca'));
export const hasWeights10 = existsSync(WEIGHTS_1_0);
export const hasWeights035 = existsSync(WEIGHTS_0_35);

/** Printed by suites that skip: a clean clone without ../shared still passes, and says why. */
export function skipReason(what: string): string {
  return `skipped: ${what} not found under ${SHARED_DIR} (the shared weights/datasets folder beside the repository)`;
}
