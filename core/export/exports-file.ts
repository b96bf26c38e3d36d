// exports.json: what `edgetune export` / `train --export` wrote beside the model, read by publishing too
// (kept apart from the writers so reading it loads no exporter).
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { FormatIdSchema } from './formats.js';

export const ExportRecordSchema = z.object({
  format: FormatIdSchema,
  /** The model file (first of `files`), relative to exports.json. */
  file: z.string(),
  bytes: z.number().int(),
  sha256: z.string(),
  files: z.array(z.object({ path: z.string(), bytes: z.number().int(), sha256: z.string() })),
  runtime: z.string(),
  weights: z.enum(['float32', 'float16', 'int8']),
  /** Median single-image latency in `runtime`, 1 thread, at export time (the machine may have been busy); absent where not measured. */
  latencyMs: z.number().optional(),
  verification: z.object({
    /** Images run through both the export and the float32 tfjs model. */
    images: z.number().int(),
    sources: z.array(z.string()),
    maxAbsDiff: z.number(),
    tolerance: z.number().optional(),
    /** Share of images whose top-1 class equals the tfjs model's. */
    top1Agreement: z.number(),
    /** On the labelled images among them: --data's (or the validation split's) when given, else verification.json's. */
    labelledImages: z.number().int(),
    accuracy: z.number().optional(),
    referenceAccuracy: z.number().optional(),
  }),
});
export type ExportRecord = z.infer<typeof ExportRecordSchema>;

export const ExportsSchema = z.object({
  schemaVersion: z.literal(1),
  model: z.object({ name: z.string(), version: z.string() }),
  edgetune: z.string(),
  exports: z.array(ExportRecordSchema),
});
export type Exports = z.infer<typeof ExportsSchema>;

/** exports.json of a folder, or undefined when there is none; an unreadable or invalid file throws, saying so. */
export async function readExportsFile(file: string): Promise<Exports | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  const r = ExportsSchema.safeParse(json);
  if (!r.success) throw new Error(`${file} is invalid: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}
