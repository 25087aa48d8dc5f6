// A strict incremental parser for text/event-stream (WHATWG HTML §9.2.6) as MCP uses it: each
// event is one JSON-RPC message. It yields whole events; the filter decides and re-emits them, so
// the agent only ever receives events the gateway parsed.
import { GatewayError } from '../errors.js';

export interface SseEvent {
  /** The `event:` field; '' when absent (the default type, `message`). */
  readonly type: string;
  /** The `data:` lines joined with "\n"; null when the event had none (a comment or priming event). */
  readonly data: string | null;
  /** The `retry:` value in ms, when the event set one. */
  readonly retry: number | null;
}

export class SseParser {
  readonly #decoder = new TextDecoder('utf-8', { fatal: true });
  readonly #maxEventBytes: number;
  #buffer = '';
  #data: string[] = [];
  #dataChars = 0;
  #type = '';
  #retry: number | null = null;
  #fields = false;

  constructor(maxEventBytes: number) {
    this.#maxEventBytes = maxEventBytes;
  }

  /** Feed a chunk; returns the events it completed. Throws upstream_invalid. */
  write(chunk: Uint8Array): SseEvent[] {
    try {
      this.#buffer += this.#decoder.decode(chunk, { stream: true });
    } catch {
      throw refuse('the event stream is not valid UTF-8');
    }
    return this.#lines(false);
  }

  /** The stream ended; an unterminated event is dropped, as the SSE spec's reader does. */
  end(): SseEvent[] {
    try {
      this.#buffer += this.#decoder.decode();
    } catch {
      throw refuse('the event stream is not valid UTF-8');
    }
    return this.#lines(true);
  }

  #lines(final: boolean): SseEvent[] {
    const events: SseEvent[] = [];
    let start = 0;
    const text = this.#buffer;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 0x0a && c !== 0x0d) continue;
      // A CR at the very end may be the first half of CRLF: wait for the next chunk.
      if (c === 0x0d && i + 1 === text.length && !final) break;
      this.#line(text.slice(start, i), events);
      if (c === 0x0d && text.charCodeAt(i + 1) === 0x0a) i++;
      start = i + 1;
    }
    this.#buffer = text.slice(start);
    if (this.#buffer.length + this.#dataChars > this.#maxEventBytes) throw refuse(`an event is larger than ${this.#maxEventBytes} bytes`);
    if (final) this.#buffer = '';
    return events;
  }

  #line(line: string, events: SseEvent[]): void {
    if (line === '') {
      if (this.#fields) events.push({ type: this.#type, data: this.#data.length === 0 ? null : this.#data.join('\n'), retry: this.#retry });
      this.#data = [];
      this.#dataChars = 0;
      this.#type = '';
      this.#retry = null;
      this.#fields = false;
      return;
    }
    if (line.charCodeAt(0) === 0x3a /* : */) return;
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    this.#fields = true;
    switch (name) {
      case 'data':
        this.#data.push(value);
        this.#dataChars += value.length + 1;
        if (this.#dataChars > this.#maxEventBytes) throw refuse(`an event is larger than ${this.#maxEventBytes} bytes`);
        break;
      case 'event':
        this.#type = value;
        break;
      case 'retry':
        if (/^\d{1,9}$/.test(value)) this.#retry = Number(value);
        break;
      default:
        // `id` and unknown fields: ids are not passed on (the gateway does not resume streams).
        break;
    }
  }
}

export function refuse(detail: string): GatewayError {
  return new GatewayError('upstream_invalid', 'the backend sent a message the gateway cannot pass on; the stream was cut', { reasonDetail: detail });
}
