// The `users:` section: which scopes a user's token claims grant for token exchange.
import type { RawEntry } from '../load.js';
import type { Backend, UserRights } from '../types.js';
import { describe } from '../units.js';
import { kindOf, type Checker } from './checker.js';

const CLAIM_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/;

/**
 * `users:` claim name -> claim value -> scopes, e.g. `users: { groups: { sales: [crm:contacts.read] } }`:
 * a user whose token's `groups` claim holds (or is) `sales` may use crm:contacts.read.
 */
export function validateUsers(
  c: Checker,
  claims: ReadonlyMap<string, RawEntry>,
  backends: ReadonlyMap<string, Backend>,
  rawBackends: ReadonlyMap<string, RawEntry>,
  complete: boolean,
): UserRights {
  const out = new Map<string, ReadonlyMap<string, ReadonlySet<string>>>();
  for (const [claim, entry] of claims) {
    const path = `users.${claim}`;
    if (!CLAIM_NAME.test(claim)) {
      c.add(entry.at, path, 'a claim name uses letters, digits, _ . : -, and starts with a letter or _');
      continue;
    }
    if (claim === 'sub' || claim === 'act') {
      c.add(entry.at, path, `"${claim}" cannot grant rights (use a claim such as groups, roles or scope)`);
      continue;
    }
    const values = c.names(entry.value, path, 'claim values to scopes');
    if (values === null) continue;
    const byValue = new Map<string, ReadonlySet<string>>();
    for (const [value, scopesEntry] of values) {
      const vPath = `${path}.${value}`;
      const items = c.list(scopesEntry, vPath);
      if (items === null) continue;
      const scopes = new Set<string>();
      items.forEach((node, i) => {
        const sPath = `${vPath}[${i}]`;
        if (node.kind !== 'scalar' || typeof node.value !== 'string') {
          c.add(node.at, sPath, `expected "backend:scope", got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
          return;
        }
        const id = node.value;
        const colon = id.indexOf(':');
        const backendName = colon === -1 ? '' : id.slice(0, colon);
        const backend = backends.get(backendName);
        if (colon === -1) c.add(node.at, sPath, `"${id}" must be backend:scope (e.g. crm:contacts.read)`);
        else if (backend === undefined) {
          if (!rawBackends.has(backendName) && complete) c.add(node.at, sPath, `unknown backend "${backendName}" in "${id}" (backends: ${[...rawBackends.keys()].join(', ') || 'none'})`);
        } else if (!backend.scopes.has(id.slice(colon + 1))) {
          c.add(node.at, sPath, `unknown scope "${id}" (${backendName} has: ${[...backend.scopes.keys()].join(', ') || 'no scopes'})`);
        } else scopes.add(id);
      });
      byValue.set(value, scopes);
    }
    out.set(claim, byValue);
  }
  return out;
}
