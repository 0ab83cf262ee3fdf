/**
 * The retention report's statement of how the store enforces what the
 * catalog records: auditors need to know whether a retain-until is a
 * promise of the archive's code or of the storage itself.
 */
import type { Config } from '../config/config.js';

export function describeImmutability(config: Pick<Config, 'ARCHIVE_STORE' | 'ARCHIVE_S3_BUCKET' | 'ARCHIVE_S3_LOCK_MODE' | 'ARCHIVE_S3_DEFAULT_RETENTION_DAYS'>): string {
  if (config.ARCHIVE_STORE === 's3') {
    return (
      `S3 Object Lock on bucket ${config.ARCHIVE_S3_BUCKET} (versioned), ${config.ARCHIVE_S3_LOCK_MODE} mode: every message object is written with ` +
      `${config.ARCHIVE_S3_DEFAULT_RETENTION_DAYS} days of retention, extended to its retain-until, never shortened; legal holds are set on the objects. ` +
      (config.ARCHIVE_S3_LOCK_MODE === 'COMPLIANCE'
        ? 'Storage refuses early deletion on its own, to every account.'
        : 'Storage refuses early deletion on its own, except to accounts granted s3:BypassGovernanceRetention.')
    );
  }
  return (
    'Local file system: objects are written once and read-only; retain-until and legal holds are recorded in the store\'s lock table and ' +
    'enforced by the archive (every deletion re-checks them). The file system itself does not refuse deletion.'
  );
}
