// The network constraint: the caller's address (the socket peer, or the client a trusted proxy
// names in X-Forwarded-For) must be inside the role's and the agent's `network.allow`.
import { isIP } from 'node:net';
import type { RequestContext } from '../../context.js';
import { GatewayError } from '../../errors.js';
import type { Agent, NetworkSet, Role } from '../../policy/types.js';
import { refuse, type Refusals } from './refusals.js';

/**
 * The caller's address: the socket peer, or, when the peer is a trusted proxy, the right-most
 * `X-Forwarded-For` entry that is not itself a trusted proxy. Null when an entry is not an address.
 */
export function clientAddress(remoteAddress: string, forwardedFor: string | string[] | undefined, trusted: NetworkSet | null): string | null {
  if (trusted === null || forwardedFor === undefined || !inSet(trusted, remoteAddress)) return remoteAddress;
  const entries = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
  let address = remoteAddress;
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = (entries[i] ?? '').trim();
    if (isIP(entry) === 0) return null;
    address = entry;
    if (!inSet(trusted, entry)) return entry;
  }
  return address;
}

function inSet(set: NetworkSet, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return set.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

export function checkNetwork(ctx: RequestContext, role: Role, agent: Agent | undefined, trusted: NetworkSet | null, refusals: Refusals): void {
  const address = clientAddress(ctx.request.remoteAddress, ctx.request.headers['x-forwarded-for'], trusted);
  const sets = [role.network?.allow, agent?.network?.allow];
  for (const set of sets) {
    if (set === undefined) continue;
    if (address === null || !inSet(set, address)) {
      refuse(
        refusals,
        new GatewayError('network_denied', 'calls for this agent are not accepted from this network', {
          reasonDetail: `${address ?? 'unparseable X-Forwarded-For'} (peer ${ctx.request.remoteAddress}) not in ${set.cidrs.join(', ')}`,
        }),
      );
      return;
    }
  }
}
