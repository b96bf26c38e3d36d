import type { z } from 'zod';

/** A zod error's issues as one line: `path.to.field: message; other: message`. */
export function formatIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}
