import { randomBytes } from 'node:crypto';

/**
 * Spool file names carry the writing process's pid, so start-up clean-up can
 * tell a crashed process's debris from a live process's work in progress.
 */
export function spoolFileName(kind: string): string {
  return `${process.pid}-${kind}-${randomBytes(8).toString('hex')}.tmp`;
}

/**
 * True when the pid in a spool file name belongs to another running process.
 * Only called at start-up, before this process spools anything, so a name
 * with our own pid is debris of an earlier process that had the same pid
 * (pid 1 in every container start).
 */
export function isOwnerAlive(name: string): boolean {
  const pid = Number(name.split('-')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
