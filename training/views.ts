import { type AugmentConfig, type AugmentDraw, drawAugmentation, isIdentity } from './augment.js';
import { createRng, deriveSeed } from './rng.js';

/**
 * The augmentation each training image gets in one epoch: seeded by (seed, epoch, file), so a
 * view is the same whatever order or worker computes it. `null` means the image as is.
 */
export function epochDraws(relPaths: readonly string[], cfg: AugmentConfig, seed: number, epoch: number): (AugmentDraw | null)[] {
  if (isIdentity(cfg)) return relPaths.map(() => null);
  return relPaths.map((p) => drawAugmentation(cfg, createRng(deriveSeed(seed, `augment:${epoch}:${p}`))));
}
