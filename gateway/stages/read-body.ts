// Reading a request body the gateway must hold itself (a constraint checks it, or a chunked body
// is framed before forwarding): bounded in size, and in idle time between bytes. A client that
// stops sending is answered 408 request_timeout, a larger body 413; the connection is closed.
import type { Readable } from 'node:stream';
import type { RequestSignal } from '../context.js';
import { GatewayError } from '../errors.js';

export interface BodyLimits {
  readonly maxBytes: number;
  /** Longest pause between two pieces of the body; 0: none. */
  readonly idleMs: number;
}

export function readBounded(stream: Readable, limits: BodyLimits, signal: RequestSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = limits.idleMs > 0 ? setTimeout(() => {
      cleanup();
      stream.pause();
      reject(new GatewayError('request_timeout', `the request body stalled for more than ${limits.idleMs / 1000} s`, { closeConnection: true }));
    }, limits.idleMs) : null;
    const cleanup = (): void => {
      if (timer !== null) clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('aborted', onAborted);
      signal.removeEventListener('abort', onAbort);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limits.maxBytes) {
        cleanup();
        stream.pause();
        reject(new GatewayError('body_too_large', `the request body exceeds ${limits.maxBytes} bytes`, { closeConnection: true }));
        return;
      }
      chunks.push(chunk);
      timer?.refresh();
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onAborted = (): void => {
      cleanup();
      reject(new Error('the client aborted the request body'));
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason instanceof Error ? signal.reason : new Error('request aborted'));
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('aborted', onAborted);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
