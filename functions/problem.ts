import { z } from '@hono/zod-openapi';

/** RFC 9457 problem details: the one error shape every route answers with. */
export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: 'urn:edgetune:problem:unsupported-media-type' }),
    title: z.string().openapi({ example: 'Unsupported Media Type' }),
    status: z.number().int().openapi({ example: 415 }),
    detail: z.string().openapi({ example: 'send image/jpeg, image/png, image/webp or image/gif' }),
    requestId: z.string().optional(),
  })
  .openapi('Problem');
export type Problem = z.infer<typeof ProblemSchema>;

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

const TITLES: Record<number, [slug: string, title: string]> = {
  400: ['bad-request', 'Bad Request'],
  401: ['unauthorized', 'Unauthorized'],
  404: ['not-found', 'Not Found'],
  405: ['method-not-allowed', 'Method Not Allowed'],
  413: ['payload-too-large', 'Payload Too Large'],
  415: ['unsupported-media-type', 'Unsupported Media Type'],
  422: ['undecodable-image', 'Unprocessable Image'],
  500: ['internal', 'Internal Server Error'],
  503: ['not-ready', 'Service Unavailable'],
};

export type ProblemStatus = 400 | 401 | 404 | 405 | 413 | 415 | 422 | 500 | 503;

/** Thrown by handlers; the app's error handler turns it into a problem+json answer. */
export class HttpProblem extends Error {
  constructor(
    readonly status: ProblemStatus,
    readonly detail: string,
  ) {
    super(detail);
    this.name = 'HttpProblem';
  }
}

export function problemBody(status: ProblemStatus, detail: string, requestId?: string): Problem {
  const [slug, title] = TITLES[status];
  return { type: `urn:edgetune:problem:${slug}`, title, status, detail, ...(requestId ? { requestId } : {}) };
}

export function problemResponse(status: ProblemStatus, detail: string, requestId?: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(problemBody(status, detail, requestId)), {
    status,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE, ...headers },
  });
}

/** OpenAPI response entries for the error statuses a route can answer with. */
export function problemResponses(...statuses: ProblemStatus[]) {
  return Object.fromEntries(
    statuses.map((s) => [s, { description: TITLES[s][1], content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema } } }]),
  );
}
