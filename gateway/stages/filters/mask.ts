// Field masking, the response filter of roles with `mask: { backend: [paths] }`. A strict streaming
// JSON transform replaces masked values with a fixed marker and passes every other byte through
// unchanged (numbers, key order, whitespace). It fails closed: a masked response that is not JSON,
// is larger than the limit, or uses an encoding the gateway cannot decode becomes 502
// response_unmaskable, never the upstream's bytes. Up to HOLD_BYTES of masked output is held, so a
// short body is answered only once it has ended as valid JSON; a longer one streams while it is
// valid JSON so far, and a failure after that cuts the connection (no final chunk: the agent
// cannot take a cut body as whole) and is audited as response_unmaskable.
import { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { RequestContext, RequestSignal } from '../../context.js';
import { GatewayError } from '../../errors.js';
import type { MaskPlan, MaskRule } from '../../policy/types.js';

/** What a masked value becomes. */
export const MASK_MARKER = '[masked]';
const MARKER_BYTES = Buffer.from(JSON.stringify(MASK_MARKER));
/** Nesting deeper than this is refused rather than tracked. */
const MAX_DEPTH = 256;
const MAX_KEY_BYTES = 16_384;
const MAX_NUMBER_CHARS = 512;
const NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const keyDecoder = new TextDecoder('utf-8', { fatal: true });

export class MaskError extends Error {}

const enum State {
  Value,
  AfterValue,
  ObjectStart,
  Key,
  Colon,
  ArrayStart,
  String,
  Number,
  Literal,
  Done,
}

interface Frame {
  readonly array: boolean;
  /** The key of the value being read in an object frame. */
  key: string | null;
}

/**
 * A strict incremental JSON parser that copies its input to its output, replacing each value whose
 * key path a rule matches with the marker. Paths count object keys only (arrays are transparent).
 */
export class JsonMasker {
  readonly #rules: readonly MaskRule[];
  readonly #stack: Frame[] = [];
  #state: State = State.Value;
  /** Depth (stack length) at which a masked value started; -1 when nothing is suppressed. */
  #suppressDepth = -1;
  #inKey = false;
  #escape = 0;
  #unicode = 0;
  /** Key bytes from earlier chunks, when a key spans chunks. */
  #keyParts: Buffer[] = [];
  #keyPartBytes = 0;
  /** Index in the current chunk where the key being read starts. */
  #keyStart = 0;
  /** No escape and no non-ASCII byte: the key is its bytes. */
  #keySimple = true;
  #token = '';
  #literal = '';
  #out: Buffer[] = [];
  #runStart = 0;

  constructor(plan: MaskPlan) {
    this.#rules = plan.rules;
  }

  /** Feed one chunk; returns the output it produced. Throws MaskError on invalid JSON. */
  write(chunk: Buffer): Buffer[] {
    this.#out = [];
    this.#runStart = 0;
    const length = chunk.length;
    for (let i = 0; i < length; i++) {
      if (this.#state === State.String && !this.#inKey && this.#escape === 0 && this.#unicode === 0) {
        // Fast path through string values: only a quote, a backslash or a control byte matters.
        let c = chunk[i] ?? 0;
        while (c !== 0x22 && c !== 0x5c && c >= 0x20 && i + 1 < length) c = chunk[++i] ?? 0;
      }
      const at = this.#step(chunk, i);
      if (at !== i) i = at;
    }
    this.#flush(chunk, chunk.length);
    if (this.#state === State.String && this.#inKey) {
      const part = Buffer.from(chunk.subarray(this.#keyStart));
      this.#keyPartBytes += part.length;
      if (this.#keyPartBytes > MAX_KEY_BYTES) throw new MaskError('key too long');
      this.#keyParts.push(part);
      this.#keyStart = 0;
    }
    return this.#out;
  }

  /** The input ended: it must have been exactly one complete JSON value. */
  end(): Buffer[] {
    this.#out = [];
    if (this.#state === State.Number) this.#finishNumber(0);
    if (this.#state === State.AfterValue && this.#stack.length === 0) this.#state = State.Done;
    if (this.#state !== State.Done) throw new MaskError('the JSON document is incomplete');
    return this.#out;
  }

  #flush(chunk: Buffer, end: number): void {
    if (this.#suppressDepth === -1 && end > this.#runStart) this.#out.push(chunk.subarray(this.#runStart, end));
    this.#runStart = end;
  }

  /** Consume byte i; returns the index of the last byte consumed (i, or i-1 to re-read it). */
  #step(chunk: Buffer, i: number): number {
    const c = chunk[i] ?? 0;
    switch (this.#state) {
      case State.String:
        this.#string(chunk, c, i);
        return i;
      case State.Number:
        if ((c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d) {
          this.#token += String.fromCharCode(c);
          if (this.#token.length > MAX_NUMBER_CHARS) throw new MaskError('number too long');
          return i;
        }
        this.#finishNumber(i);
        return i - 1;
      case State.Literal:
        if (c !== this.#literal.charCodeAt(this.#token.length)) throw new MaskError('invalid literal');
        this.#token += String.fromCharCode(c);
        if (this.#token.length === this.#literal.length) this.#afterScalar(i + 1);
        return i;
      default:
        break;
    }
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) return i;
    switch (this.#state) {
      case State.Done:
        throw new MaskError('data after the JSON document');
      case State.Value:
      case State.ArrayStart:
        if (this.#state === State.ArrayStart && c === 0x5d /* ] */) {
          this.#close(i, true);
          return i;
        }
        this.#startValue(chunk, i, c);
        return i;
      case State.ObjectStart:
      case State.Key:
        if (this.#state === State.ObjectStart && c === 0x7d /* } */) {
          this.#close(i, false);
          return i;
        }
        if (c !== 0x22) throw new MaskError('expected a key');
        this.#inKey = true;
        this.#keyParts = [];
        this.#keyPartBytes = 0;
        this.#keyStart = i + 1;
        this.#keySimple = true;
        this.#state = State.String;
        return i;
      case State.Colon:
        if (c !== 0x3a) throw new MaskError('expected ":"');
        this.#state = State.Value;
        return i;
      case State.AfterValue: {
        const top = this.#stack[this.#stack.length - 1];
        if (top === undefined) throw new MaskError('data after the JSON document');
        if (c === 0x2c /* , */) {
          this.#state = top.array ? State.Value : State.Key;
          return i;
        }
        if ((c === 0x5d && top.array) || (c === 0x7d && !top.array)) {
          this.#close(i, top.array);
          return i;
        }
        throw new MaskError('expected "," or the end of the container');
      }
      default:
        throw new MaskError('invalid JSON');
    }
  }

  #startValue(chunk: Buffer, i: number, c: number): void {
    if (this.#suppressDepth === -1 && this.#matches()) {
      // Everything up to here goes out; the value itself is replaced by the marker.
      this.#flush(chunk, i);
      this.#out.push(MARKER_BYTES);
      this.#suppressDepth = this.#stack.length;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (this.#stack.length >= MAX_DEPTH) throw new MaskError('nested too deeply');
      const array = c === 0x5b;
      this.#stack.push({ array, key: null });
      this.#state = array ? State.ArrayStart : State.ObjectStart;
    } else if (c === 0x22) {
      this.#inKey = false;
      this.#state = State.String;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      this.#token = String.fromCharCode(c);
      this.#state = State.Number;
    } else if (c === 0x74 || c === 0x66 || c === 0x6e) {
      this.#literal = c === 0x74 ? 'true' : c === 0x66 ? 'false' : 'null';
      this.#token = String.fromCharCode(c);
      this.#state = State.Literal;
    } else {
      throw new MaskError('expected a value');
    }
  }

  #string(chunk: Buffer, c: number, i: number): void {
    if (this.#inKey && (c === 0x5c || c >= 0x80)) this.#keySimple = false;
    if (this.#unicode > 0) {
      const hex = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
      if (!hex) throw new MaskError('invalid \\u escape');
      this.#unicode--;
      return;
    }
    if (this.#escape === 1) {
      this.#escape = 0;
      if (c === 0x75 /* u */) this.#unicode = 4;
      else if (c !== 0x22 && c !== 0x5c && c !== 0x2f && c !== 0x62 && c !== 0x66 && c !== 0x6e && c !== 0x72 && c !== 0x74) throw new MaskError('invalid escape');
      return;
    }
    if (c === 0x5c) {
      this.#escape = 1;
      return;
    }
    if (c < 0x20) throw new MaskError('control character in a string');
    if (c !== 0x22) return;
    if (this.#inKey) {
      const top = this.#stack[this.#stack.length - 1];
      if (top === undefined) throw new MaskError('key outside an object');
      if (this.#keyPartBytes + i - this.#keyStart > MAX_KEY_BYTES) throw new MaskError('key too long');
      const tail = chunk.subarray(this.#keyStart, i);
      const bytes = this.#keyParts.length === 0 ? tail : Buffer.concat([...this.#keyParts, tail]);
      this.#keyParts = [];
      let key: string;
      if (this.#keySimple) {
        key = bytes.toString('latin1');
      } else {
        try {
          // The key as every JSON parser reads it: escapes decoded ("em\u0061il" is "email").
          key = JSON.parse(`"${keyDecoder.decode(bytes)}"`) as string;
        } catch {
          throw new MaskError('invalid key');
        }
      }
      top.key = key;
      this.#inKey = false;
      this.#state = State.Colon;
      return;
    }
    this.#afterScalar(i + 1);
  }

  /** A number ends at the first byte that cannot continue it (index `next`, read again). */
  #finishNumber(next: number): void {
    if (!NUMBER.test(this.#token)) throw new MaskError('invalid number');
    this.#afterScalar(next);
  }

  /** A scalar ended; `next` is the index of the first byte after it in the current chunk. */
  #afterScalar(next: number): void {
    if (this.#suppressDepth === this.#stack.length) this.#resume(next);
    this.#state = this.#stack.length === 0 ? State.Done : State.AfterValue;
  }

  #close(i: number, array: boolean): void {
    const top = this.#stack.pop();
    if (top === undefined || top.array !== array) throw new MaskError('mismatched brackets');
    if (this.#suppressDepth === this.#stack.length) this.#resume(i + 1);
    this.#state = this.#stack.length === 0 ? State.Done : State.AfterValue;
  }

  /** The masked value is complete: copying resumes at `next`, the first byte after it. */
  #resume(next: number): void {
    this.#suppressDepth = -1;
    this.#runStart = next;
  }

  /** Does the current key path end with (or, anchored, equal) one of the rules? */
  #matches(): boolean {
    const stack = this.#stack;
    // The innermost key names the value; at the top level, or directly in an array at the top
    // level, there is no key.
    for (const rule of this.#rules) {
      const keys = rule.keys;
      let k = keys.length - 1;
      let j = stack.length - 1;
      // Walk object frames from the innermost outwards, skipping arrays.
      while (k >= 0 && j >= 0) {
        const frame = stack[j];
        j--;
        if (frame === undefined || frame.array) continue;
        const want = keys[k];
        if (want !== '*' && want !== frame.key) break;
        k--;
      }
      if (k >= 0) continue;
      if (!rule.anchored) return true;
      // Anchored: no object frame may remain outside the matched keys.
      let outer = false;
      for (let x = j; x >= 0; x--) if (stack[x]?.array === false) outer = true;
      if (!outer) return true;
    }
    return false;
  }
}

/** Masked output held before the answer starts streaming (a shorter body is validated whole first). */
export const HOLD_BYTES = 64 * 1024;

export interface MaskFilterOptions {
  /** Largest masked response body, after decoding; larger ones are refused. */
  readonly maxBytes: number;
}

/** Same shape as pipeline's ResponseFilter (stages do not import the pipeline). */
export interface MaskFilter {
  readonly name: 'mask';
  apply(ctx: RequestContext): void | Promise<void>;
}

const JSON_TYPE = /^application\/(?:[a-z0-9.+-]+\+)?json$/;

export function createMaskFilter(options: MaskFilterOptions): MaskFilter {
  const { maxBytes } = options;
  return {
    name: 'mask',
    apply(ctx: RequestContext): void | Promise<void> {
      const plan = ctx.grant?.mask ?? null;
      const upstream = ctx.upstream;
      // Unmasked routes pay nothing: one property read.
      if (plan === null || upstream === null) return;
      const body = upstream.body;
      if (body === null || ctx.request.method === 'HEAD' || upstream.status === 204 || upstream.status === 304) return;
      const headers = upstream.headers;
      const refuse = (why: string): never => {
        discard(body);
        throw new GatewayError('response_unmaskable', 'the response must be masked for this role and could not be; nothing was passed on', { reasonDetail: why });
      };
      if (upstream.status === 206 || headers['content-range'] !== undefined) refuse('partial content cannot be masked');
      const type = single(headers['content-type']).split(';')[0]?.trim().toLowerCase() ?? '';
      if (!JSON_TYPE.test(type)) refuse(`content-type ${JSON.stringify(type).slice(0, 80)} is not JSON`);
      const encoding = single(headers['content-encoding']).trim().toLowerCase();
      let decoded: Readable = body;
      if (encoding === 'gzip' || encoding === 'x-gzip') decoded = body.pipe(createGunzip());
      else if (encoding === 'deflate') decoded = body.pipe(createInflate());
      else if (encoding === 'br') decoded = body.pipe(createBrotliDecompress());
      else if (encoding !== '' && encoding !== 'identity') refuse(`content-encoding ${JSON.stringify(encoding).slice(0, 40)} cannot be decoded`);
      const declared = Number(single(headers['content-length']));
      if (encoding === '' && Number.isFinite(declared) && declared > maxBytes) refuse(`content-length ${declared} above ${maxBytes}`);
      if (decoded !== body) {
        body.on('error', (error: Error) => decoded.destroy(error));
        // A decoder closed early (a cut, a refusal) releases the upstream body too.
        decoded.once('close', () => discard(body));
      }
      return maskStream(decoded, new JsonMasker(plan), maxBytes, ctx.signal).then(
        (masked) => {
          const out: Record<string, string | string[]> = {};
          for (const name in headers) {
            // The body changed: its length, encoding and validators no longer hold.
            if (name === 'content-length' || name === 'content-encoding' || name === 'etag' || name === 'content-md5' || name === 'digest' || name === 'repr-digest' || name === 'content-digest') continue;
            const value = headers[name];
            if (value !== undefined) out[name] = value;
          }
          if (Buffer.isBuffer(masked)) {
            out['content-length'] = String(masked.length);
            ctx.upstream = { ...upstream, headers: out, body: Readable.from([masked]) };
          } else {
            // Streaming: sent chunked, its length unknown until the upstream body ends.
            ctx.upstream = { ...upstream, headers: out, body: masked };
          }
        },
        (error: unknown) => {
          discard(body);
          if (error instanceof MaskError) return refuse(error.message);
          if (ctx.signal.aborted) throw error;
          return refuse(`decoding failed: ${error instanceof Error ? error.message : String(error)}`);
        },
      );
    },
  };
}

/**
 * Mask `stream`. Resolves the whole masked body when it ends within HOLD_BYTES of output (or fails
 * first: rejects), else a Readable of the masked body that starts with what was held and streams
 * the rest while the JSON stays valid; a later failure destroys it with response_unmaskable (or
 * with the upstream's or the abort's error), which the runner turns into a cut connection.
 */
function maskStream(stream: Readable, masker: JsonMasker, maxBytes: number, signal: RequestSignal): Promise<Buffer | Readable> {
  return new Promise((resolve, reject) => {
    let parts: Buffer[] = [];
    let held = 0;
    let inBytes = 0;
    let out: Readable | null = null;
    const fail = (error: unknown): void => {
      cleanup();
      if (out === null) return reject(error);
      stream.destroy();
      out.destroy(
        error instanceof MaskError
          ? new GatewayError('response_unmaskable', 'the response must be masked for this role and could not be; it was cut', { reasonDetail: `after streaming began: ${error.message}` })
          : error instanceof Error
            ? error
            : new Error(String(error)),
      );
    };
    const emit = (chunks: Buffer[]): void => {
      if (out !== null) {
        let more = true;
        for (const c of chunks) more = out.push(c) && more;
        if (!more) stream.pause();
        return;
      }
      for (const c of chunks) {
        parts.push(c);
        held += c.length;
      }
      if (held <= HOLD_BYTES) return;
      // Valid JSON so far and past what is worth holding: the answer starts now.
      out = new Readable({
        read: () => {
          stream.resume();
        },
        destroy: (error, callback) => {
          cleanup();
          stream.destroy();
          callback(error);
        },
      });
      for (const p of parts) out.push(p);
      parts = [];
      stream.pause();
      resolve(out);
    };
    const onData = (chunk: Buffer): void => {
      inBytes += chunk.length;
      if (inBytes > maxBytes) return fail(new MaskError(`response above ${maxBytes} bytes`));
      try {
        emit(masker.write(chunk));
      } catch (error) {
        fail(error);
      }
    };
    const onEnd = (): void => {
      try {
        const rest = masker.end();
        cleanup();
        if (out === null) return resolve(Buffer.concat([...parts, ...rest]));
        emit(rest);
        out.push(null);
      } catch (error) {
        fail(error);
      }
    };
    const onAbort = (): void => fail(signal.reason instanceof Error ? signal.reason : new Error('request aborted'));
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', fail);
      // A source destroyed from here on must not raise an unhandled 'error'.
      stream.on('error', () => undefined);
      signal.removeEventListener('abort', onAbort);
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', fail);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function discard(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}

function single(value: string | string[] | undefined): string {
  if (value === undefined) return '';
  return Array.isArray(value) ? value.join(',') : value;
}
