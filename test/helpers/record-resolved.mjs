// `node --import` this: every module URL resolved from then on is appended to the file named by
// EDGETUNE_TEST_RESOLVED, one per line (resolve hooks run on Node's loader thread).
import { register } from 'node:module';

register('./record-resolved-hooks.mjs', import.meta.url);
