/**
 * The archive's Ed25519 key that signs export manifests (chain of custody).
 * Embedded mode: generated on first use and kept in `<dataDir>/keys/`
 * (mode 0600). Scale-out: `ARCHIVE_SIGNING_KEY` (PEM), the same on every node.
 * The public key and its fingerprint are served at `GET /api/keys/signing`,
 * so a recipient can check a package against the archive's published key.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/config.js';
import { ConfigError } from '../errors.js';

export interface SigningKey {
  privateKey: KeyObject;
  publicKeyPem: string;
  /** `SHA256:` and the hex SHA-256 of the DER SubjectPublicKeyInfo. */
  fingerprint: string;
  source: 'config' | 'data-dir';
}

export const KEY_FILE = 'export-signing-ed25519.pem';

/** What is signed: a domain-separated statement of the manifest's SHA-256 (Ed25519 cannot sign a stream). */
export function signedStatement(manifestSha256: string): Buffer {
  return Buffer.from(`mail-archive export manifest v1\n${manifestSha256}\n`);
}

export function fingerprintOf(publicKey: KeyObject): string {
  return `SHA256:${createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex')}`;
}

function fromPrivateKey(privateKey: KeyObject, source: SigningKey['source']): SigningKey {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new ConfigError('ARCHIVE_SIGNING_KEY: not an Ed25519 key');
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), fingerprint: fingerprintOf(publicKey), source };
}

const cache = new Map<string, Promise<SigningKey>>();

/** The archive's signing key (cached per process). */
export function loadSigningKey(config: Pick<Config, 'ARCHIVE_SIGNING_KEY' | 'ARCHIVE_STORE' | 'dataDir'>): Promise<SigningKey> {
  const cacheKey = config.ARCHIVE_SIGNING_KEY ? `pem:${createHash('sha256').update(config.ARCHIVE_SIGNING_KEY).digest('hex')}` : `dir:${config.dataDir}`;
  let p = cache.get(cacheKey);
  if (!p) {
    p = resolveKey(config);
    cache.set(cacheKey, p);
    p.catch(() => cache.delete(cacheKey));
  }
  return p;
}

async function resolveKey(config: Pick<Config, 'ARCHIVE_SIGNING_KEY' | 'ARCHIVE_STORE' | 'dataDir'>): Promise<SigningKey> {
  if (config.ARCHIVE_SIGNING_KEY) return fromPrivateKey(createPrivateKey(config.ARCHIVE_SIGNING_KEY.replace(/\\n/g, '\n')), 'config');
  if (config.ARCHIVE_STORE === 's3') {
    // Nodes of a scale-out archive keep no state: a key generated here would differ per node.
    throw new ConfigError('ARCHIVE_SIGNING_KEY: required for exports when ARCHIVE_STORE=s3 (every node must sign with one key)');
  }
  const dir = path.join(config.dataDir, 'keys');
  const file = path.join(dir, KEY_FILE);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    return fromPrivateKey(createPrivateKey(await readFile(file, 'utf8')), 'data-dir');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  // Written aside and linked into place: link never replaces, so two processes
  // starting at once agree on one key, and no reader ever sees a half-written file.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, pem, { mode: 0o600, flag: 'wx' });
  try {
    await link(tmp, file);
    return fromPrivateKey(privateKey, 'data-dir');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return fromPrivateKey(createPrivateKey(await readFile(file, 'utf8')), 'data-dir');
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

export function signManifest(key: SigningKey, manifestSha256: string): string {
  return sign(null, signedStatement(manifestSha256), key.privateKey).toString('base64');
}

export function verifyManifestSignature(publicKeyPem: string, manifestSha256: string, signatureB64: string): boolean {
  try {
    return verify(null, signedStatement(manifestSha256), createPublicKey(publicKeyPem), Buffer.from(signatureB64, 'base64'));
  } catch {
    return false;
  }
}
