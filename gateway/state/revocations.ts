// Revoked token ids, compact: each jti is kept as the first 16 bytes of its SHA-256 with its expiry
// (seconds), 20 bytes in one Uint32Array, in an open-addressing hash set (linear probing,
// backward-shift deletion, so no tombstones). 100,000 revocations take about 3.3 MB instead of the
// ~11 MB of a Map of strings, and no object per entry for the garbage collector to walk.
//
// Hashing only ever errs on the closed side: the same jti always finds its own digest, and a
// different jti matching a revoked digest (a 128-bit collision) would be refused, never let in.
// The slot of a digest is derived with a key drawn at start, so nobody outside can choose jtis
// that pile up on one slot; the digests themselves are stable, so they can be persisted.
//
// Expiry: lookups treat an expired entry as absent; every insertion sweeps a few slots ahead of a
// cursor and deletes what has expired, and a table about to grow is first rebuilt without its
// expired entries. That bounds memory by the live revocations at the cost a timing wheel would
// have, without the wheel's second copy of every digest.
import { hash, randomBytes } from 'node:crypto';

/** Bytes of one persisted record: 16-byte digest, then the expiry as a little-endian u32. */
export const RECORD_BYTES = 20;
const WORDS = 5;
const MIN_CAPACITY = 16;
/** Grow (or purge) past this load; rebuild to REBUILD_LOAD. */
const MAX_LOAD = 0.75;
const REBUILD_LOAD = 0.6;
/** Slots examined for expired entries per insertion. */
const SWEEP_PER_INSERT = 8;
const MAX_EXPIRY = 0xffff_ffff;

/** The 16-byte digest of a jti, as four u32 words. */
export function jtiDigest(jti: string, into: Uint32Array = new Uint32Array(4)): Uint32Array {
  // Hex rather than a Buffer: a Buffer per lookup is a native allocation on every call, and
  // the slices below stay on the V8 heap, where the young generation reclaims them for free.
  const hex = hash('sha256', jti, 'hex');
  into[0] = parseInt(hex.slice(0, 8), 16);
  into[1] = parseInt(hex.slice(8, 16), 16);
  into[2] = parseInt(hex.slice(16, 24), 16);
  into[3] = parseInt(hex.slice(24, 32), 16);
  return into;
}

/** Reused by the synchronous lookups and insertions (the table copies what it keeps). */
const scratch = new Uint32Array(4);

export interface RevocationSetOptions {
  /** Initial number of entries to make room for. */
  readonly expected?: number;
  /** Four u32 words keying the slot function; random when omitted (tests pin it to force collisions). */
  readonly slotKey?: readonly [number, number, number, number];
}

export class RevocationSet {
  #table: Uint32Array;
  #capacity: number;
  #size = 0;
  #cursor = 0;
  readonly #key: Uint32Array;

  constructor(options: RevocationSetOptions = {}) {
    this.#capacity = capacityFor(options.expected ?? 0);
    this.#table = new Uint32Array(this.#capacity * WORDS);
    const key = options.slotKey;
    this.#key = key === undefined ? new Uint32Array(randomBytes(16).buffer, 0, 4) : Uint32Array.from(key);
  }

  /** Entries held, expired ones not yet swept included. */
  get size(): number {
    return this.#size;
  }

  /** Slots allocated (each RECORD_BYTES bytes). */
  get capacity(): number {
    return this.#capacity;
  }

  /** The slot `jti` probes first (tests use it to build collisions). */
  slotOf(jti: string): number {
    return this.#home(jtiDigest(jti, scratch), 0);
  }

  /** True while `jti` is revoked at `nowSeconds`. Pure: never changes the table. */
  has(jti: string, nowSeconds: number): boolean {
    if (this.#size === 0) return false;
    return this.hasDigest(jtiDigest(jti, scratch), nowSeconds);
  }

  hasDigest(d: Uint32Array, nowSeconds: number): boolean {
    return this.expiryOf(d) > nowSeconds;
  }

  /**
   * When the digest's revocation ends (seconds; 0: not in the table). The caller compares it with
   * the time only when there is one, so the common answer (not revoked) needs no clock reading.
   */
  expiryOf(d: Uint32Array): number {
    if (this.#size === 0) return 0;
    const slot = this.#find(d);
    return slot < 0 ? 0 : (this.#table[slot * WORDS + 4] as number);
  }

  /** Revoke `jti` until `expiresAt` (seconds); an earlier expiry never shortens a later one. */
  add(jti: string, expiresAt: number, nowSeconds: number): void {
    this.addDigest(jtiDigest(jti, scratch), expiresAt, nowSeconds);
  }

  addDigest(d: Uint32Array, expiresAt: number, nowSeconds: number): void {
    // Expiry 0 marks an empty slot; anything at or before now is not revoked anyway.
    if (!(expiresAt > nowSeconds) || !(expiresAt > 0)) return;
    const exp = Math.min(MAX_EXPIRY, Math.ceil(expiresAt));
    const found = this.#find(d);
    if (found >= 0) {
      const at = found * WORDS + 4;
      if ((this.#table[at] as number) < exp) this.#table[at] = exp;
      return;
    }
    this.sweep(nowSeconds, SWEEP_PER_INSERT);
    if (this.#size + 1 > this.#capacity * MAX_LOAD) this.#rebuild(nowSeconds, this.#size + 1);
    this.#place(d, 0, exp);
  }

  /** Delete expired entries in the next `slots` slots after the sweep cursor. */
  sweep(nowSeconds: number, slots: number): void {
    const table = this.#table;
    for (let n = 0; n < slots && this.#size > 0; n++) {
      const slot = this.#cursor;
      const exp = table[slot * WORDS + 4] as number;
      if (exp !== 0 && exp <= nowSeconds) {
        // An entry from further on may shift into this slot: look at it again next.
        this.#delete(slot);
        continue;
      }
      this.#cursor = slot + 1 === this.#capacity ? 0 : slot + 1;
    }
  }

  /** Drop every expired entry now (and shrink when most were). */
  purge(nowSeconds: number): void {
    this.#rebuild(nowSeconds, 0);
  }

  /** Live entries as records (RECORD_BYTES each), for the state file. */
  toBuffer(nowSeconds: number): Buffer {
    const out = Buffer.allocUnsafe(this.#size * RECORD_BYTES);
    let at = 0;
    const table = this.#table;
    for (let slot = 0; slot < this.#capacity; slot++) {
      const base = slot * WORDS;
      const exp = table[base + 4] as number;
      if (exp === 0 || exp <= nowSeconds) continue;
      for (let w = 0; w < 5; w++) out.writeUInt32LE(table[base + w] as number, at + w * 4);
      at += RECORD_BYTES;
    }
    return out.subarray(0, at);
  }

  /** Add the records of `toBuffer`; returns false (adding nothing) when `bytes` is not a whole number of records. */
  addBuffer(bytes: Buffer, nowSeconds: number): boolean {
    if (bytes.length % RECORD_BYTES !== 0) return false;
    const count = bytes.length / RECORD_BYTES;
    if (this.#size + count > this.#capacity * MAX_LOAD) this.#rebuild(nowSeconds, this.#size + count);
    const d = new Uint32Array(4);
    for (let at = 0; at < bytes.length; at += RECORD_BYTES) {
      for (let w = 0; w < 4; w++) d[w] = bytes.readUInt32LE(at + w * 4);
      this.addDigest(d, bytes.readUInt32LE(at + 16), nowSeconds);
    }
    return true;
  }

  /** Home slot of the digest in `d` at word `at`. */
  #home(d: Uint32Array, at: number): number {
    const k = this.#key;
    let h = Math.imul((d[at] as number) ^ (k[0] as number), 0x9e3779b1);
    h ^= Math.imul((d[at + 1] as number) ^ (k[1] as number), 0x85ebca77);
    h = (h << 13) | (h >>> 19);
    h ^= Math.imul((d[at + 2] as number) ^ (k[2] as number), 0xc2b2ae3d);
    h ^= Math.imul((d[at + 3] as number) ^ (k[3] as number), 0x27d4eb2f);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    // Scale to the capacity (which need not be a power of two) without a division.
    return Math.floor(((h >>> 0) * this.#capacity) / 0x1_0000_0000);
  }

  #find(d: Uint32Array): number {
    const table = this.#table;
    const capacity = this.#capacity;
    for (let slot = this.#home(d, 0), probes = 0; probes < capacity; probes++) {
      const base = slot * WORDS;
      if (table[base + 4] === 0) return -1;
      if (table[base] === d[0] && table[base + 1] === d[1] && table[base + 2] === d[2] && table[base + 3] === d[3]) return slot;
      slot = slot + 1 === capacity ? 0 : slot + 1;
    }
    return -1;
  }

  /** Insert a digest known to be absent; the caller has made room. */
  #place(d: Uint32Array, at: number, exp: number): void {
    const table = this.#table;
    let slot = this.#home(d, at);
    while (table[slot * WORDS + 4] !== 0) slot = slot + 1 === this.#capacity ? 0 : slot + 1;
    const base = slot * WORDS;
    table[base] = d[at] as number;
    table[base + 1] = d[at + 1] as number;
    table[base + 2] = d[at + 2] as number;
    table[base + 3] = d[at + 3] as number;
    table[base + 4] = exp;
    this.#size++;
  }

  /** Backward-shift deletion: later entries of the probe run move up, so lookups never stop early. */
  #delete(slot: number): void {
    const table = this.#table;
    const capacity = this.#capacity;
    let hole = slot;
    let next = slot;
    for (;;) {
      next = next + 1 === capacity ? 0 : next + 1;
      if (table[next * WORDS + 4] === 0) break;
      const home = this.#home(table, next * WORDS);
      // The entry at `next` may fill the hole only if its home is not cyclically in (hole, next].
      const stays = hole <= next ? hole < home && home <= next : hole < home || home <= next;
      if (stays) continue;
      table.copyWithin(hole * WORDS, next * WORDS, next * WORDS + WORDS);
      hole = next;
    }
    table.fill(0, hole * WORDS, hole * WORDS + WORDS);
    this.#size--;
  }

  /** Rehash the live entries into a table sized for `atLeast` of them (or the live count). */
  #rebuild(nowSeconds: number, atLeast: number): void {
    const old = this.#table;
    const oldCapacity = this.#capacity;
    let live = 0;
    for (let slot = 0; slot < oldCapacity; slot++) {
      const exp = old[slot * WORDS + 4] as number;
      if (exp !== 0 && exp > nowSeconds) live++;
    }
    this.#capacity = capacityFor(Math.max(live, atLeast));
    this.#table = new Uint32Array(this.#capacity * WORDS);
    this.#size = 0;
    this.#cursor = 0;
    for (let slot = 0; slot < oldCapacity; slot++) {
      const base = slot * WORDS;
      const exp = old[base + 4] as number;
      if (exp !== 0 && exp > nowSeconds) this.#place(old, base, exp);
    }
  }
}

function capacityFor(entries: number): number {
  return Math.max(MIN_CAPACITY, Math.ceil(entries / REBUILD_LOAD));
}
