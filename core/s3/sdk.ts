// The S3 client package, required rather than imported, for the reason core/tf.ts gives: its main is
// CommonJS, which Node scans for export names when ESM imports it (~0.15 s of the first s3:// read
// here). Bundles see the same `require` call and bundle it.
import { createRequire } from 'node:module';
import type * as S3Sdk from '@aws-sdk/client-s3';

const load = typeof require === 'function' ? undefined : createRequire(import.meta.url);
export const s3Sdk = (load ? load('@aws-sdk/client-s3') : require('@aws-sdk/client-s3')) as typeof S3Sdk;
