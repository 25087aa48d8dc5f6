// Network allowlists: a role's or agent's `network: { allow: [cidr...] }`, and the CIDR lists
// the configuration shares (`trustedProxies`).
import { buildNetworkSet, parseCidr, type ParsedCidr } from '../compile.js';
import type { RawEntry } from '../load.js';
import type { NetworkPolicy, NetworkSet } from '../types.js';
import { describe } from '../units.js';
import { kindOf, type Checker } from './checker.js';

/** `network: { allow: [cidr...] }`. */
export function validateNetwork(c: Checker, entry: RawEntry, path: string): NetworkPolicy | null {
  const keys = c.map(entry.value, path, ['allow']);
  if (keys === null) return null;
  const allowEntry = c.required(keys, 'allow', path, entry.at);
  const allow = allowEntry === undefined ? null : validateCidrs(c, allowEntry, `${path}.allow`);
  return allow === null ? null : Object.freeze({ allow });
}

/** A non-empty list of IPv4/IPv6 networks. Shared with the config's `trustedProxies`. */
export function validateCidrs(c: Checker, entry: RawEntry, path: string): NetworkSet | null {
  const items = c.list(entry, path);
  if (items === null) return null;
  if (items.length === 0) {
    c.add(entry.value.at, path, 'needs at least one network (e.g. 10.0.0.0/8)');
    return null;
  }
  const parsed: Array<{ text: string; parsed: ParsedCidr }> = [];
  let ok = true;
  items.forEach((item, i) => {
    const iPath = `${path}[${i}]`;
    if (item.kind !== 'scalar' || typeof item.value !== 'string') {
      c.add(item.at, iPath, `expected a network such as 10.0.0.0/8 or fd00::/8, got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
      ok = false;
      return;
    }
    const cidr = parseCidr(item.value);
    if (typeof cidr === 'string') {
      c.add(item.at, iPath, cidr);
      ok = false;
      return;
    }
    parsed.push({ text: item.value, parsed: cidr });
  });
  return ok ? buildNetworkSet(parsed) : null;
}
