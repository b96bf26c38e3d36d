declare module 's3rver' {
  import type { Server } from 'node:http';

  interface S3rverOptions {
    address?: string;
    port?: number;
    silent?: boolean;
    directory?: string;
    resetOnClose?: boolean;
    allowMismatchedSignatures?: boolean;
    vhostBuckets?: boolean;
    configureBuckets?: Array<{ name: string; configs?: Array<string | Buffer> }>;
  }
  export default class S3rver {
    constructor(options?: S3rverOptions);
    run(): Promise<{ address: string; port: number; family: string }>;
    /** Koa's listen wrapped by s3rver: resolves with the node server once listening (a port, or a unix socket path). */
    listen(pathOrPort: string | number): Promise<Server>;
    configureBuckets(): Promise<void>;
    close(): Promise<void>;
    httpServer?: Server;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }
}
