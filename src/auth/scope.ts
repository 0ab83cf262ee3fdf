/**
 * A user's scope: which mail they may see (promise 7). Stored on the user as
 * addresses, domains and named custodian groups; resolved at sign-in of each
 * request into the index's {@link Scope} (groups become their addresses).
 * `null` means unrestricted. The index adapters apply the resolved scope to
 * search, get and thread; nothing in the UI or the routes filters mail.
 */
import { z } from 'zod';
import type { Scope } from '../ports/message-index.js';
import type { IndexedMessage } from '../domain/indexed-message.js';

export interface UserScope {
  addresses: string[];
  domains: string[];
  /** Names of custodian groups; each stands for its list of addresses. */
  groups: string[];
}

/** A named list of mailboxes, e.g. one region's custodians. */
export interface CustodianGroup {
  name: string;
  addresses: string[];
  description?: string;
  updatedAt: string;
}

const address = z
  .string()
  .trim()
  .toLowerCase()
  .max(254, 'at most 254 characters (RFC 5321)')
  .regex(/^[^\s@]+@[^\s@]+$/, 'an e-mail address');
const domain = z
  .string()
  .trim()
  .toLowerCase()
  .transform((d) => d.replace(/^@/, '').replace(/\.$/, ''))
  .pipe(z.string().regex(/^[a-z0-9-]+(\.[a-z0-9-]+)*$/, 'a domain name'));
export const groupName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'a group name (letters, digits, . _ -)');

export const userScopeSchema = z.object({
  addresses: z.array(address).max(10_000).default([]),
  domains: z.array(domain).max(10_000).default([]),
  groups: z.array(groupName).max(1000).default([]),
});

export function normalizeAddress(a: string): string {
  return address.parse(a);
}

/** Lower-cases, de-duplicates and checks a scope's entries. Throws ZodError on a malformed one. */
export function normalizeScope(input: Partial<UserScope>): UserScope {
  const s = userScopeSchema.parse(input);
  return { addresses: [...new Set(s.addresses)].sort(), domains: [...new Set(s.domains)].sort(), groups: [...new Set(s.groups)].sort() };
}

/** A scope that sees nothing. */
export function emptyScope(): UserScope {
  return { addresses: [], domains: [], groups: [] };
}

/**
 * The index scope of a user scope: its addresses and domains, plus the
 * addresses of its groups. A group that does not exist contributes nothing
 * (fail closed). `null` stays null (unrestricted).
 */
export function resolveScope(scope: UserScope | null, groups: Map<string, CustodianGroup | undefined>): Scope | null {
  if (scope === null) return null;
  const addresses = new Set(scope.addresses);
  for (const g of scope.groups) for (const a of groups.get(g)?.addresses ?? []) addresses.add(a);
  return { addresses: [...addresses].sort(), domains: [...scope.domains] };
}

/** A domain and its parents down to two labels (mail.x.example → mail.x.example, x.example), as search/MATCHING.md defines. */
export function domainAndParents(d: string): string[] {
  const labels = d.split('.');
  const out = [d];
  for (let i = 1; labels.length - i >= 2; i++) out.push(labels.slice(i).join('.'));
  return out;
}

/**
 * Every address that puts a message in someone's scope: the people of its
 * headers (From, Sender, To, Cc, Bcc, Reply-To), every envelope recipient
 * (with the list it was expanded from and the address it was forwarded
 * from), and the envelope senders.
 */
export function scopeAddressesOf(doc: IndexedMessage): Set<string> {
  const out = new Set<string>();
  for (const p of [...doc.from, ...doc.sender, ...doc.to, ...doc.cc, ...doc.bcc, ...doc.replyTo]) if (p.address) out.add(p.address.toLowerCase());
  for (const r of doc.envelopeRecipients) {
    for (const a of [r.address, r.expandedFrom, r.forwardedFrom]) if (a) out.add(a.toLowerCase());
  }
  for (const a of doc.envelopeSenders) if (a) out.add(a.toLowerCase());
  return out;
}

/**
 * Whether a message is in scope, computed directly from its document. The
 * index adapters implement the same rule in their query languages; this is
 * the reference the scope tests compare them with.
 */
export function messageInScope(doc: IndexedMessage, scope: Scope | null | undefined): boolean {
  if (!scope) return true;
  const addresses = new Set(scope.addresses.map((a) => a.toLowerCase()));
  const domains = new Set(scope.domains.map((d) => d.toLowerCase()));
  for (const a of scopeAddressesOf(doc)) {
    if (addresses.has(a)) return true;
    const at = a.lastIndexOf('@');
    if (at < 0) continue;
    for (const d of domainAndParents(a.slice(at + 1))) if (domains.has(d)) return true;
  }
  return false;
}

/** One line for people: `all mail`, or what the scope covers. */
export function describeScope(scope: UserScope | null): string {
  if (scope === null) return 'all mail (unrestricted)';
  const parts = [
    ...scope.domains.map((d) => `domain ${d}`),
    ...scope.addresses.map((a) => `address ${a}`),
    ...scope.groups.map((g) => `group ${g}`),
  ];
  return parts.length ? parts.join(', ') : 'no mail (empty scope)';
}
