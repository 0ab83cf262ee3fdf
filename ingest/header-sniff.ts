/**
 * Cheap looks at a message's header block, for routing decisions made before
 * (or instead of) a full parse.
 */
import { findHeaderEnd, headerValue, parseContentType, parseHeaderFields } from './mime/header-block.js';

/** The header block (up to the first empty line), or undefined if `head` holds no end of headers. */
export function headerBlockOf(head: Buffer): Buffer | undefined {
  const end = findHeaderEnd(head);
  return end ? head.subarray(0, end.headerLength) : undefined;
}

/** True for a non-delivery report (multipart/report), which may wrap a journal report being resent. */
export function looksLikeNdr(headerBlock: Buffer): boolean {
  const ct = parseContentType(headerValue(parseHeaderFields(headerBlock), 'content-type'));
  return ct.mediaType === 'multipart/report';
}
