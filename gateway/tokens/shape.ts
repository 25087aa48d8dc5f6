// Finding an access token where none belongs: in a request target or a header other than
// Authorization, where the backend would receive it. An access token is a JWS whose protected
// header says `typ: at+jwt` (RFC 9068 §2.1, as every token the gateway mints does); other JWTs (an
// ID token, a backend's own) and base64url JSON that is not a JWS (a pagination cursor) are not.
// Pure and bounded: only text containing `eyJ` (`{"` in base64url) is looked at further.

/** Longest base64url protected header looked at (a JWS header is a few hundred characters). */
const MAX_HEADER_CHARS = 2048;
/** Shortest one that can say `{"typ":"at+jwt"}`: shorter runs are never decoded. */
const MIN_HEADER_CHARS = 22;

/** Rounds of percent-decoding looked through: a backend that decodes twice reads `%2565yJ` too. */
const DECODE_ROUNDS = 3;

/** Whether `text`, or its ASCII percent-decoding (up to three times), holds an access token (`typ` at+jwt). */
export function carriesAccessToken(text: string): boolean {
  let current = text;
  for (let round = 0; ; round++) {
    if (current.includes('eyJ') && scan(current)) return true;
    // A backend decodes its query (and some decode header values): `%65yJ...` is the same token.
    if (round === DECODE_ROUNDS || !current.includes('%')) return false;
    const decoded = decodeAscii(current);
    if (decoded === current) return false;
    current = decoded;
  }
}

/**
 * Every candidate is looked at (no cap a run of decoys could exhaust); the scan is linear in the
 * text, and only a base64url run of 22 to 2048 characters followed by a dot is decoded, and parsed
 * only when it names a `typ`.
 */
function scan(text: string): boolean {
  let from = 0;
  for (;;) {
    const start = text.indexOf('eyJ', from);
    if (start === -1) return false;
    let end = start + 3;
    while (end < text.length && isBase64Url(text.charCodeAt(end))) end++;
    const length = end - start;
    // A compact JWS: the protected header, then a dot.
    if (text.charCodeAt(end) === 0x2e && length >= MIN_HEADER_CHARS && length <= MAX_HEADER_CHARS && isAccessTokenHeader(text.slice(start, end))) return true;
    from = end;
  }
}

function isAccessTokenHeader(encoded: string): boolean {
  const json = Buffer.from(encoded, 'base64url').toString('utf8');
  if (!json.includes('"typ"')) return false;
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch {
    return false;
  }
  if (typeof header !== 'object' || header === null) return false;
  const typ = (header as { typ?: unknown }).typ;
  if (typeof typ !== 'string') return false;
  const lower = typ.toLowerCase();
  return lower === 'at+jwt' || lower === 'application/at+jwt';
}

function isBase64Url(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
}

/** `%XX` escapes of ASCII characters decoded; anything else (other escapes, bad ones) kept as is. */
function decodeAscii(text: string): string {
  return text.replace(/%([0-7][0-9A-Fa-f])/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}
