// A deadline on every command of a Redis client. node-redis's own `timeout` stops counting once
// the command is written to the socket, so a server that stops answering (SIGSTOP, a partition)
// would leave callers waiting forever. Past its deadline a command rejects with
// StateUnavailableError and the stall is reported; the late reply, if any, is matched and
// discarded by the client in order.
import { StateUnavailableError } from './store.js';

/** Methods that manage the connection rather than run a command: they keep their own limits. */
const LIFECYCLE: ReadonlySet<string | symbol> = new Set(['connect', 'close', 'destroy', 'quit', 'disconnect', 'duplicate', 'on', 'once', 'off', 'emit']);

export function withDeadlines<T extends object>(client: T, timeoutMs: number, onTimeout: (command: string) => void): T {
  return new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      // `this` is always the client itself: node-redis keeps its state in private fields.
      if (LIFECYCLE.has(prop)) return (value as (...a: unknown[]) => unknown).bind(target);
      const command = String(prop);
      return (...args: unknown[]): unknown => {
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (!(result instanceof Promise)) return result;
        return deadline(result, timeoutMs, command, onTimeout);
      };
    },
  });
}

/** Race `promise` against `timeoutMs`; every failure becomes a StateUnavailableError. */
export function deadline<R>(promise: Promise<R>, timeoutMs: number, command: string, onTimeout: (command: string) => void): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout(command);
      reject(new StateUnavailableError(`redis ${command}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof StateUnavailableError ? error : new StateUnavailableError(`redis ${command}: ${(error as Error).message}`, { cause: error }));
      },
    );
  });
}
