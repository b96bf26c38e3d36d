#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, so `npx edgetune` works right after `npm ci`.
import { register } from 'tsx/esm/api';

// The AWS SDK warns on every start that its releases after January 2027 need Node 22; the
// locked SDK runs on Node 20, so keep the CLI's output for what matters (README: Requirements).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
register();
await import('../training/cli.ts');
