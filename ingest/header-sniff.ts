/**
 * Cheap looks at a message's header block, for routing decisions made before
 * (or instead of) a full parse.
 */

/** The header block (up to the first empty line), or undefined if `head` holds no end of headers. */
export function headerBlockOf(head: Buffer): Buffer | undefined {
  const crlf = head.indexOf('\r\n\r\n');
  const lf = head.indexOf('\n\n');
  const ends = [crlf >= 0 ? crlf + 2 : -1, lf >= 0 ? lf + 1 : -1].filter((n) => n >= 0);
  if (!ends.length) return undefined;
  return head.subarray(0, Math.min(...ends));
}

/** True for a non-delivery report (multipart/report), which may wrap a journal report being resent. */
export function looksLikeNdr(headerBlock: Buffer): boolean {
  return /^content-type:\s*multipart\/report/im.test(headerBlock.toString('latin1'));
}
