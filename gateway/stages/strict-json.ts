// Strict JSON for bodies the gateway must inspect: rejects what parsers disagree on, so the value
// we check is the value every backend sees. Duplicate keys (first-wins vs last-wins parsers),
// a byte-order mark, invalid UTF-8 and the keys __proto__, constructor and prototype (at any
// depth) are refused; the rest is JSON.parse.

export type StrictJsonResult = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly problem: string };

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function parseStrictJson(bytes: Uint8Array): StrictJsonResult {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    return { ok: false, problem: 'body is not valid UTF-8' };
  }
  if (text.charCodeAt(0) === 0xfeff) return { ok: false, problem: 'body starts with a byte-order mark' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'body is not valid JSON' };
  }
  const found = findDuplicateKey(text);
  if (typeof found === 'string') return { ok: false, problem: `duplicate key "${found}"` };
  if (found !== null) return { ok: false, problem: `key "${found.forbidden}" is not accepted` };
  return { ok: true, value };
}

/**
 * Scans already-valid JSON text and returns the first key repeated within one object, or a
 * forbidden key, or null.
 * Runs only on text JSON.parse accepted, so it can trust the grammar.
 */
function findDuplicateKey(text: string): string | { readonly forbidden: string } | null {
  // One key set per open container; arrays get null.
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] instanceof Set;
    } else if (c === 0x22 /* " */) {
      const start = i;
      i++;
      while (i < text.length && text.charCodeAt(i) !== 0x22) {
        if (text.charCodeAt(i) === 0x5c /* \ */) i++;
        i++;
      }
      if (expectKey) {
        const key = JSON.parse(text.slice(start, i + 1)) as string;
        // Prototype pollution in the backend's language: refused wherever it appears.
        if (key === '__proto__' || key === 'constructor' || key === 'prototype') return { forbidden: key };
        const keys = stack[stack.length - 1];
        if (keys instanceof Set) {
          if (keys.has(key)) return key;
          keys.add(key);
        }
        expectKey = false;
      }
    }
  }
  return null;
}
