// One worker thread of a pool (the boundary pool, the parallel tail): started through
// worker-entry.mjs, a ready handshake, replies matched to requests by id, every waiting request
// rejected when the worker fails (crash, unexpected exit, an error reply without an id), and a
// close that asks the worker to stop and terminates it if it does not within 2 s.
// `serveWorker` is the other end, in the worker thread.
import { parentPort, Worker } from 'node:worker_threads';

interface Reply {
  type: string;
  id?: number;
  message?: string;
}

/** A request as the caller writes it: the channel adds the id. */
export type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

export interface WorkerChannel<Req, Rep> {
  readonly worker: Worker;
  /** The worker's first message when that is `{ type: 'ready' }`; rejects otherwise. */
  readonly ready: Promise<Extract<Rep, { type: 'ready' }>>;
  /** Requests waiting for their reply. */
  readonly pending: number;
  /** Sends `msg` with a fresh id; resolves with the reply of that id, rejects with an error reply. */
  request(msg: WithoutId<Req>, transfer?: readonly ArrayBuffer[]): Promise<Rep>;
  /** Rejects every waiting and every later request with `e` (the first failure is kept). */
  fail(e: Error): void;
  /** Sends `{ type: 'close' }` and waits for the thread to exit; waiting requests fail with `reason`. */
  close(reason: string): Promise<void>;
}

export interface ChannelOptions {
  /** Names the worker in errors, e.g. `tail worker 0`. */
  label: string;
  /** Called once, with the first failure. */
  onFail?: (e: Error) => void;
  /** Let the process exit while no request is waiting (a forgotten close must not hang a CLI). */
  unrefWhenIdle?: boolean;
}

/** Starts the worker thread with `workerData` (its `entry` picks the module, see worker-entry.mjs). */
export function startWorkerChannel<Req extends object, Rep extends Reply>(
  workerData: unknown,
  opts: ChannelOptions,
): WorkerChannel<Req, Rep> {
  const { label } = opts;
  const worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData });
  const waiting = new Map<number, { resolve(r: Rep): void; reject(e: Error): void }>();
  let nextId = 0;
  let failure: Error | undefined;
  let closing = false;
  const fail = (e: Error) => {
    if (!failure) {
      failure = e;
      opts.onFail?.(e);
    }
    for (const p of waiting.values()) p.reject(e);
    waiting.clear();
  };
  const ready = new Promise<Extract<Rep, { type: 'ready' }>>((resolve, reject) => {
    worker.once('message', (m: Rep) => {
      if (m.type === 'ready') resolve(m as Extract<Rep, { type: 'ready' }>);
      else reject(new Error(m.type === 'error' ? `${label}: ${m.message}` : `${label}: unexpected first message ${m.type}`));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`${label} exited during start (code ${code})`)));
  });
  worker.on('message', (m: Rep) => {
    if (m.type === 'ready') return;
    const p = m.id === undefined ? undefined : waiting.get(m.id);
    if (!p) {
      if (m.type === 'error') fail(new Error(`${label}: ${m.message}`));
      return;
    }
    waiting.delete(m.id as number);
    if (opts.unrefWhenIdle && !waiting.size) worker.unref();
    if (m.type === 'error') p.reject(new Error(`${label}: ${m.message}`));
    else p.resolve(m);
  });
  worker.on('error', (e) => fail(new Error(`${label} crashed: ${e.message}`)));
  worker.on('exit', (code) => {
    if (!closing) fail(new Error(`${label} exited (code ${code})`));
  });
  if (opts.unrefWhenIdle)
    ready.then(
      () => worker.unref(),
      () => {},
    );

  return {
    worker,
    ready,
    get pending() {
      return waiting.size;
    },
    fail,
    request: (msg, transfer) =>
      new Promise((resolve, reject) => {
        if (failure) return reject(failure);
        const id = nextId++;
        waiting.set(id, { resolve, reject });
        if (opts.unrefWhenIdle) worker.ref();
        worker.postMessage({ ...msg, id }, (transfer ?? []) as ArrayBuffer[]);
      }),
    close: (reason) =>
      new Promise<void>((resolve) => {
        if (closing) return resolve();
        closing = true;
        fail(new Error(reason));
        worker.ref();
        const timer = setTimeout(() => void worker.terminate().then(() => resolve()), 2000);
        worker.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        worker.postMessage({ type: 'close' });
      }),
  };
}

export interface WorkerService<Req> {
  /** The `{ type: 'ready', ... }` message. */
  ready: object;
  /** The reply to one request (and buffers to transfer with it). */
  handle(msg: Req): Promise<{ reply: object; transfer?: ArrayBuffer[] }> | { reply: object; transfer?: ArrayBuffer[] };
  dispose(): void;
}

/**
 * The worker's end of a channel: `start` builds the service (an error there is sent as the first
 * message); each request gets `handle`'s reply, or an error reply with its id; `{ type: 'close' }`
 * disposes the service and ends the thread.
 */
export async function serveWorker<Req extends { type: string; id?: number }>(start: () => Promise<WorkerService<Req>>): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('serveWorker must run in a worker thread');
  let service: WorkerService<Req>;
  try {
    service = await start();
  } catch (e) {
    port.postMessage({ type: 'error', message: `init failed: ${(e as Error).message}` });
    return;
  }
  port.postMessage(service.ready);
  port.on('message', async (msg: Req) => {
    if (msg.type === 'close') {
      service.dispose();
      port.close();
      return;
    }
    try {
      const { reply, transfer } = await service.handle(msg);
      port.postMessage(reply, transfer ?? []);
    } catch (e) {
      port.postMessage({ type: 'error', id: msg.id, message: (e as Error).message });
    }
  });
}
