import { randomUUID } from 'node:crypto';
import { EDGE_MAX_BODY_BYTES } from './config.js';
import { API_CSP } from './page.js';
import { PROBLEM_CONTENT_TYPE, problemBody } from './problem.js';

interface EdgeEvent {
  Records?: { cf?: { request?: { body?: { inputTruncated?: boolean } } } }[];
}

/**
 * CloudFront gives an origin-request trigger at most 1 MB of the body and sets `inputTruncated`
 * when it cut the rest off: decoding that prefix would be a broken image, so answer 413 instead.
 * Returns the CloudFront result to send, or undefined to handle the request normally.
 */
export function truncatedBodyResult(event: EdgeEvent) {
  if (!event?.Records?.[0]?.cf?.request?.body?.inputTruncated) return undefined;
  const requestId = randomUUID();
  const body = problemBody(413, `the body is larger than the ${EDGE_MAX_BODY_BYTES}-byte limit of this edge endpoint`, requestId);
  const h = (key: string, value: string) => [{ key, value }];
  return {
    status: '413',
    headers: {
      'content-type': h('content-type', PROBLEM_CONTENT_TYPE),
      'x-request-id': h('x-request-id', requestId),
      'x-content-type-options': h('x-content-type-options', 'nosniff'),
      'content-security-policy': h('content-security-policy', API_CSP),
    },
    body: JSON.stringify(body),
  };
}
