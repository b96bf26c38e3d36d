/** Structured JSON logs, one object per line. Never pass image bytes in `fields`. */
export type LogFields = Record<string, unknown>;
export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export function jsonLogger(write: (line: string) => void = (l) => process.stdout.write(l + '\n')): Logger {
  const emit = (level: string, msg: string, fields?: LogFields) => {
    const entry: LogFields = { time: new Date().toISOString(), level, msg, ...fields };
    for (const [k, v] of Object.entries(entry)) {
      // Defence in depth: binary payloads never reach a log line.
      if (v instanceof Uint8Array || v instanceof ArrayBuffer) entry[k] = `<${(v as Uint8Array).byteLength} bytes>`;
    }
    write(JSON.stringify(entry));
  };
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

/** Collects entries in memory, for tests. */
export function memoryLogger(): Logger & { entries: LogFields[] } {
  const entries: LogFields[] = [];
  const log = jsonLogger((line) => entries.push(JSON.parse(line)));
  return Object.assign(log, { entries });
}
