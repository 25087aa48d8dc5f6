// Structured JSON logs (pino) to stdout: start, bind, reload, key rotation, errors.
// Never log a token, secret or key: callers pass identifiers (agent, jti), not credentials, and
// the redaction list below is the net under that rule for the header and field names that carry them.
import type { Writable } from 'node:stream';
import { pino, type Logger as PinoLogger } from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(bindings: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  readonly level?: LogLevel;
  /** Defaults to stdout, written synchronously: logs are rare events, and none may be lost at exit. */
  readonly stream?: Writable;
  readonly bindings?: Record<string, unknown>;
}

/** Field names that may hold a credential; their values are replaced wherever they appear. */
const REDACT = [
  'token',
  'authorization',
  'secret',
  'client_secret',
  'assertion',
  'client_assertion',
  'subject_token',
  'actor_token',
  'password',
  'privateKey',
  'signingKey',
  'd',
  '*.token',
  '*.authorization',
  '*.secret',
  '*.client_secret',
  '*.client_assertion',
  '*.subject_token',
  '*.actor_token',
  '*.password',
  '*.privateKey',
  '*.signingKey',
  'headers.authorization',
  'headers.cookie',
];

export function createLogger(options: LoggerOptions = {}): Logger {
  const instance = pino(
    {
      level: options.level ?? 'info',
      base: { pid: process.pid, ...options.bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: '[redacted]' },
      serializers: { error: serializeError, err: serializeError },
    },
    options.stream ?? pino.destination({ dest: 1, sync: true }),
  );
  return wrap(instance);
}

function wrap(instance: PinoLogger): Logger {
  return {
    debug: (msg, fields) => instance.debug(fields ?? {}, msg),
    info: (msg, fields) => instance.info(fields ?? {}, msg),
    warn: (msg, fields) => instance.warn(fields ?? {}, msg),
    error: (msg, fields) => instance.error(fields ?? {}, msg),
    child: (bindings) => wrap(instance.child(bindings)),
  };
}

/** Errors log as name, message and code: stacks and causes can quote request data. */
function serializeError(value: unknown): unknown {
  if (value instanceof Error) {
    return { name: value.name, message: value.message, code: (value as { code?: unknown }).code };
  }
  return value;
}
