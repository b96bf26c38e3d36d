import { appendFileSync } from 'node:fs';

export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (process.env.EDGETUNE_TEST_RESOLVED) appendFileSync(process.env.EDGETUNE_TEST_RESOLVED, `${r.url}\n`);
  return r;
}
