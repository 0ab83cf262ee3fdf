/**
 * Roles. A user holds a list of them; what each allows:
 *
 * - `admin`: configuration, users, tokens, custodian groups, jobs. No message
 *   content by itself.
 * - `officer`: search, view and download mail within scope (and, later,
 *   holds and exports).
 * - `reviewer`: search and view mail within scope; no export.
 * - `auditor`: the audit trail and reports. No message content unless the
 *   user also holds a content role.
 */
export const ROLES = ['admin', 'officer', 'reviewer', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

/** Roles that may read message content (search hits, views, raw bytes, attachments, threads). */
export const CONTENT_ROLES: readonly Role[] = ['officer', 'reviewer'];

export function isRole(v: string): v is Role {
  return (ROLES as readonly string[]).includes(v);
}

export function hasAnyRole(roles: readonly Role[], wanted: readonly Role[]): boolean {
  return roles.some((r) => wanted.includes(r));
}
