/**
 * Pure pieces of the identity layer: TOTP against the RFC 6238 test
 * vectors, scrypt hashing, scope normalisation and matching (the rule of
 * search/MATCHING.md), group mapping for single sign-on, canonical JSON for
 * audit hashes, and secrets redacted from logs.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { base32Decode, base32Encode, hotp, matchTotp, totp } from '../src/auth/totp.js';
import { generatePassword, hashPassword, verifyPassword } from '../src/auth/password.js';
import { domainAndParents, messageInScope, normalizeScope, resolveScope } from '../src/auth/scope.js';
import { mapGroups, safeReturnTo } from '../src/auth/oidc.js';
import { canonicalJson } from '../src/audit/canonical-json.js';
import { createLogger } from '../src/logger.js';
import { loadConfig, redactConfig } from '../src/config/config.js';
import type { IndexedMessage } from '../src/domain/indexed-message.js';

describe('TOTP (RFC 6238)', () => {
  // RFC 6238 Appendix B, SHA-1 key "12345678901234567890", 8 digits.
  const key = Buffer.from('12345678901234567890');
  it.each([
    [59, '94287082'],
    [1111111109, '07081804'],
    [1111111111, '14050471'],
    [1234567890, '89005924'],
    [2000000000, '69279037'],
    [20000000000, '65353130'],
  ])('T=%i → %s', (t, code) => {
    expect(hotp(key, Math.floor(t / 30), 8)).toBe(code);
  });
  it('SHA-256 and SHA-512 vectors too', () => {
    expect(hotp(Buffer.from('12345678901234567890123456789012'), Math.floor(59 / 30), 8, 'sha256')).toBe('46119246');
    expect(hotp(Buffer.from('1234567890123456789012345678901234567890123456789012345678901234'), Math.floor(59 / 30), 8, 'sha512')).toBe('90693936');
  });
  it('base32 round trip (RFC 4648 vectors)', () => {
    expect(base32Encode(Buffer.from('foobar'))).toBe('MZXW6YTBOI');
    expect(base32Decode('MZXW6YTBOI').toString()).toBe('foobar');
    expect(base32Decode('mzxw6ytboi======').toString()).toBe('foobar');
  });
  it('accepts ±1 step, nothing further, and tells which step matched', () => {
    const secret = base32Encode(key);
    const now = 1_700_000_000_000;
    const step = Math.floor(now / 30_000);
    expect(matchTotp(secret, totp(secret, now), now)).toBe(step);
    expect(matchTotp(secret, totp(secret, now - 30_000), now)).toBe(step - 1);
    expect(matchTotp(secret, totp(secret, now + 30_000), now)).toBe(step + 1);
    expect(matchTotp(secret, totp(secret, now - 90_000), now)).toBeUndefined();
    expect(matchTotp(secret, 'abcdef', now)).toBeUndefined();
  });
});

describe('passwords', () => {
  it('scrypt hashes verify, differ per salt, and refuse wrong or malformed input', async () => {
    const h1 = await hashPassword('correct horse battery staple');
    const h2 = await hashPassword('correct horse battery staple');
    expect(h1).not.toBe(h2);
    expect(h1).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(await verifyPassword('correct horse battery staple', h1)).toBe(true);
    expect(await verifyPassword('correct horse battery stapler', h1)).toBe(false);
    expect(await verifyPassword('x', 'plain-text')).toBe(false);
    expect(await verifyPassword('x', 'scrypt$99999999$8$1$AA==$AA==')).toBe(false);
  });
  it('one-time passwords are long and random', () => {
    const a = generatePassword();
    expect(a).toMatch(/^[A-HJ-NP-Za-km-z2-9]{20}$/);
    expect(new Set(Array.from({ length: 50 }, () => generatePassword())).size).toBe(50);
  });
});

const doc = (over: Partial<IndexedMessage>): IndexedMessage => ({
  id: 'a'.repeat(64),
  date: 0,
  receivedAt: 0,
  from: [],
  sender: [],
  to: [],
  cc: [],
  bcc: [],
  replyTo: [],
  envelopeRecipients: [],
  envelopeSenders: [],
  subject: '',
  body: '',
  attachments: [],
  attachmentText: '',
  references: [],
  threadId: 't',
  size: 1,
  hasAttachments: false,
  envelopeIds: [],
  ...over,
});

describe('scopes', () => {
  it('normalises: lower case, no leading @, sorted and unique; rejects junk', () => {
    expect(normalizeScope({ domains: ['@Corp.Example.', 'corp.example'], addresses: ['Bob@Corp.Example'], groups: ['legal'] })).toEqual({ domains: ['corp.example'], addresses: ['bob@corp.example'], groups: ['legal'] });
    expect(() => normalizeScope({ domains: ['bad domain'] })).toThrow();
    expect(() => normalizeScope({ addresses: ['no-at-sign'] })).toThrow();
  });
  it('a domain covers its subdomains down to two labels, never look-alikes', () => {
    expect(domainAndParents('a.mail.corp.example')).toEqual(['a.mail.corp.example', 'mail.corp.example', 'corp.example']);
    expect(domainAndParents('corp.example')).toEqual(['corp.example']);
    const s = { addresses: [], domains: ['corp.example'] };
    expect(messageInScope(doc({ to: [{ address: 'x@mail.corp.example' }] }), s)).toBe(true);
    expect(messageInScope(doc({ to: [{ address: 'x@badcorp.example' }] }), s)).toBe(false);
    expect(messageInScope(doc({ to: [{ address: 'x@corp.example.evil.test' }] }), s)).toBe(false);
    expect(messageInScope(doc({ to: [{ address: 'x@corp.example' }] }), { addresses: [], domains: ['example'] })).toBe(false);
  });
  it('any participant or envelope address counts: Bcc, lists, forwarders, envelope senders', () => {
    const s = { addresses: ['z@x.example'], domains: [] };
    expect(messageInScope(doc({ bcc: [{ address: 'z@x.example' }] }), s)).toBe(true);
    expect(messageInScope(doc({ envelopeRecipients: [{ address: 'a@y.example', kind: 'bcc', expandedFrom: 'z@x.example' }] }), s)).toBe(true);
    expect(messageInScope(doc({ envelopeRecipients: [{ address: 'a@y.example', kind: 'to', forwardedFrom: 'z@x.example' }] }), s)).toBe(true);
    expect(messageInScope(doc({ envelopeSenders: ['z@x.example'] }), s)).toBe(true);
    expect(messageInScope(doc({ replyTo: [{ address: 'Z@X.example' }] }), s)).toBe(true);
    expect(messageInScope(doc({ to: [{ address: 'q@x.example' }] }), s)).toBe(false);
    expect(messageInScope(doc({}), { addresses: [], domains: [] })).toBe(false);
    expect(messageInScope(doc({}), null)).toBe(true);
  });
  it('groups resolve to their addresses; a missing group adds nothing', () => {
    const groups = new Map([
      ['legal', { name: 'legal', addresses: ['l@corp.example'], updatedAt: '' }],
      ['gone', undefined],
    ]);
    expect(resolveScope({ addresses: ['a@x.example'], domains: ['d.example'], groups: ['legal', 'gone'] }, groups)).toEqual({ addresses: ['a@x.example', 'l@corp.example'], domains: ['d.example'] });
    expect(resolveScope(null, groups)).toBeNull();
  });
});

describe('single sign-on mapping', () => {
  const map = {
    officers: { roles: ['officer' as const], scope: { domains: ['Corp.Example'], addresses: [], groups: [] } },
    auditors: { roles: ['auditor' as const] },
    everything: { roles: [], scope: 'all' as const },
    emea: { roles: [], scope: { domains: ['emea.example'], addresses: ['x@y.example'], groups: ['legal'] } },
  };
  it('unions roles and scopes; "all" wins; unknown groups count for nothing', () => {
    expect(mapGroups(['officers', 'emea', 'nobody'], map)).toEqual({ roles: ['officer'], scope: { domains: ['corp.example', 'emea.example'], addresses: ['x@y.example'], groups: ['legal'] } });
    expect(mapGroups(['auditors', 'officers'], map).roles).toEqual(['officer', 'auditor']);
    expect(mapGroups(['officers', 'everything'], map).scope).toBeNull();
    expect(mapGroups(['auditors'], map)).toEqual({ roles: ['auditor'], scope: { domains: [], addresses: [], groups: [] } });
    expect(mapGroups([], map).roles).toEqual([]);
  });
  it('returns only to local paths', () => {
    expect(safeReturnTo('/search?q=x')).toBe('/search?q=x');
    for (const bad of ['//evil.example', 'https://evil.example', '/\\evil.example', 'javascript:alert(1)', undefined, '']) expect(safeReturnTo(bad)).toBe('/');
  });
});

describe('canonical JSON', () => {
  it('is independent of key order and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: undefined } })).toBe('{"a":{"d":[1,{"x":1,"y":2}]},"b":1}');
    expect(canonicalJson({ a: 1, b: 2 })).toBe(canonicalJson({ b: 2, a: 1 }));
  });
});

describe('secrets stay out of logs and printed configuration', () => {
  it('the logger redacts passwords, tokens, cookies and secret settings', async () => {
    let out = '';
    const sink = new Writable({
      write(chunk, _enc, cb) {
        out += chunk.toString();
        cb();
      },
    });
    const log = createLogger({ level: 'info', destination: sink });
    log.info(
      {
        password: 'hunter2-password',
        token: 'arc_0123456789abcdef_secrettokenvalue',
        user: { password: 'nested-password', passwordHash: 'scrypt$nested' },
        req: { headers: { authorization: 'Bearer arc_leaked', cookie: 'archive_session=leaked-cookie' } },
        body: { newPassword: 'new-secret', currentPassword: 'old-secret' },
        config: { ARCHIVE_OIDC_CLIENT_SECRET: 'oidc-client-secret', ARCHIVE_SMTP_AUTH_PASSWORD: 'smtp-secret' },
      },
      'something happened',
    );
    log.flush();
    await new Promise((r) => setTimeout(r, 20));
    expect(out).toContain('something happened');
    for (const secret of ['hunter2-password', 'secrettokenvalue', 'nested-password', 'scrypt$nested', 'arc_leaked', 'leaked-cookie', 'new-secret', 'old-secret', 'oidc-client-secret', 'smtp-secret']) {
      expect(out, secret).not.toContain(secret);
    }
  });
  it('`archive config` shows the OIDC client secret as ***', () => {
    const cfg = loadConfig({ ARCHIVE_OIDC_ISSUER: 'https://idp.example', ARCHIVE_OIDC_CLIENT_ID: 'archive', ARCHIVE_OIDC_CLIENT_SECRET: 's3cr3t', ARCHIVE_OIDC_REDIRECT_URL: 'https://archive.example/api/auth/oidc/callback' });
    const shown = redactConfig(cfg);
    expect(shown.ARCHIVE_OIDC_CLIENT_SECRET).toBe('***');
    expect(JSON.stringify(shown)).not.toContain('s3cr3t');
  });
  it('bad auth settings stop start-up naming the variable', () => {
    expect(() => loadConfig({ ARCHIVE_OIDC_GROUP_MAP: '{"g": {"roles": ["superuser"]}}' })).toThrow(/ARCHIVE_OIDC_GROUP_MAP/);
    expect(() => loadConfig({ ARCHIVE_OIDC_GROUP_MAP: 'not json' })).toThrow(/ARCHIVE_OIDC_GROUP_MAP: not JSON/);
    expect(() => loadConfig({ ARCHIVE_OIDC_ISSUER: 'https://idp.example' })).toThrow(/ARCHIVE_OIDC_CLIENT_ID/);
    expect(() => loadConfig({ ARCHIVE_HTTP_TRUST_PROXY: '10.0.0.0/33' })).toThrow(/ARCHIVE_HTTP_TRUST_PROXY/);
    expect(() => loadConfig({ ARCHIVE_COOKIE_SECURE: 'maybe' })).toThrow(/ARCHIVE_COOKIE_SECURE/);
  });
});
