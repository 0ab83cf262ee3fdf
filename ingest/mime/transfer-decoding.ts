/**
 * In-memory decoders for small, already bounded MIME bodies (a journal
 * report's text part): content-transfer-encodings and charsets. Every
 * function here is linear in its input and never throws on bad input.
 */

/** Decodes quoted-printable (RFC 2045 6.7). Invalid escapes are kept as written, as RFC 2045 advises. */
export function decodeQuotedPrintable(buf: Buffer): Buffer {
  const out = Buffer.allocUnsafe(buf.length);
  let o = 0;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (c !== 0x3d) {
      out[o++] = c;
      continue;
    }
    // Soft line break: '=' then optional trailing whitespace, then CRLF or LF.
    let j = i + 1;
    while (j < buf.length && (buf[j] === 0x20 || buf[j] === 0x09)) j++;
    if (buf[j] === 0x0a) {
      i = j;
      continue;
    }
    if (buf[j] === 0x0d && buf[j + 1] === 0x0a) {
      i = j + 1;
      continue;
    }
    const h = hexValue(buf[i + 1]);
    const l = hexValue(buf[i + 2]);
    if (h >= 0 && l >= 0) {
      out[o++] = (h << 4) | l;
      i += 2;
    } else {
      out[o++] = c;
    }
  }
  return out.subarray(0, o);
}

function hexValue(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** Decodes base64, ignoring line breaks and any other character outside the alphabet. */
export function decodeBase64(buf: Buffer): Buffer {
  return Buffer.from(buf.toString('latin1').replace(/[^A-Za-z0-9+/]/g, ''), 'base64');
}

/** Undoes a Content-Transfer-Encoding; identity for 7bit, 8bit, binary and unknown values. */
export function decodeTransfer(buf: Buffer, encoding: string | undefined): Buffer {
  const e = (encoding ?? '').trim().toLowerCase();
  if (e === 'quoted-printable') return decodeQuotedPrintable(buf);
  if (e === 'base64') return decodeBase64(buf);
  return buf;
}

/**
 * Decodes text in a MIME charset. Unknown or missing charsets fall back to
 * UTF-8, and invalid sequences become U+FFFD, so this never throws.
 */
export function decodeCharset(buf: Buffer, charset: string | undefined): string {
  const label = (charset ?? '').trim().toLowerCase();
  // us-ascii is a subset of UTF-8; decoding it as windows-1252 (what WHATWG maps it to) would hide bad bytes.
  if (label === '' || label === 'us-ascii' || label === 'ascii') return new TextDecoder('utf-8').decode(buf);
  try {
    return new TextDecoder(label).decode(buf);
  } catch {
    return new TextDecoder('utf-8').decode(buf);
  }
}
