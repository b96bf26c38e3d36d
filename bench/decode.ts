// npm run bench:decode [-- --data <folder of class folders>]: decoding photos to the model's input,
// one thread: core/image.ts (sharp) as training and serving run it, the same pipeline with every
// embedded ICC profile converted (before sRGB profiles were skipped, core/icc-profile.ts), and
// Debian's PIL (libjpeg-turbo, what the PyTorch anchor decodes with) when /usr/bin/python3 has it.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { embedsSrgbProfile, iccProfile } from '../core/icc-profile.js';
import { decodeImage } from '../core/image.js';
import { sniffFormat } from '../core/image-format.js';
import { sharp } from '../core/sharp.js';
import { listDataset } from '../training/dataset.js';
import { machineLine } from './machine.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: path.resolve(import.meta.dirname, '../../shared/datasets/alpaca') },
    rounds: { type: 'string', default: '3' },
  },
});
const root = values.data as string;
if (!existsSync(root)) {
  console.log(`bench:decode: ${root} not found (the alpaca photos in ../shared, or --data): nothing to decode`);
  process.exit(0);
}
// The photos training would decode, found as training finds them.
const files = (await listDataset(root)).files.map((f) => f.absPath);
const photos = files.map((f) => new Uint8Array(readFileSync(f)));
const format = (b: Uint8Array) => sniffFormat(b) ?? '';
const withProfile = photos.filter((b) => iccProfile(b, format(b))).length;
const srgb = photos.filter((b) => embedsSrgbProfile(b, format(b))).length;
console.log(machineLine());
console.log(
  `bench:decode: ${photos.length} photos from ${root}; ${withProfile} embed an ICC profile, ${srgb} of them sRGB (not converted)`,
);

sharp.concurrency(1);
const rounds = Number(values.rounds);
/** Each decoder's range of per-photo means over `rounds` rounds, alternating so a drift of the machine hits all alike. */
async function msPerPhoto(fns: ((b: Uint8Array) => Promise<unknown>)[]): Promise<string[]> {
  const means: number[][] = fns.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (const [k, fn] of fns.entries()) {
      const t = performance.now();
      for (const b of photos) await fn(b);
      means[k].push((performance.now() - t) / photos.length);
    }
  }
  return means.map((m) => `${Math.min(...m).toFixed(1)}-${Math.max(...m).toFixed(1)} ms`);
}
for (const size of [224, 160]) {
  const [ours, before] = await msPerPhoto([(b) => decodeImage(b, { size }), (b) => decodeImage(b, { size, convertEveryProfile: true })]);
  console.log(`to ${size}x${size}, a photo, ${rounds} rounds: core/image.ts ${ours}; every profile converted ${before}`);
}

const python = '/usr/bin/python3';
const pil = `
import io, sys, time
from PIL import Image
paths = sys.argv[1:]
data = [open(p, 'rb').read() for p in paths]
for size in (224, 160):
  best = []
  for r in range(${rounds}):
    t = time.perf_counter()
    for b in data:
      im = Image.open(io.BytesIO(b)); im.draft('RGB', (size, size)); im.convert('RGB').resize((size, size), Image.BILINEAR)
    best.append((time.perf_counter() - t) / len(data) * 1000)
  print(f'to {size}x{size}, a photo: PIL (draft mode, bilinear) {min(best):.1f}-{max(best):.1f} ms')
`;
try {
  process.stdout.write(execFileSync(python, ['-c', pil, ...files], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
} catch (e) {
  console.log(`PIL reference skipped: ${python} with PIL did not run (${(e as Error).message.split('\n')[0]})`);
}
