import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { cleanStyle, countRemoteImages, extractBody, sanitizeMailHtml, viewerCsp, viewerDocument } from './message-html.js';

describe('sanitizeMailHtml: hostile HTML becomes inert markup', () => {
  const vectors: [string, RegExp][] = [
    ['<script>alert(1)</script><p>x</p>', /script|alert/i],
    ['<img src=x onerror=alert(1)>', /onerror|alert|src=/i],
    ['<body onload=alert(1)><p>x</p></body>', /onload|alert/i],
    ['<a href="javascript:alert(1)">x</a>', /href|javascript/i],
    ['<form action="http://evil/"><input name=p><button>Go</button></form>', /<form|<input|<button|evil/i],
    ['<meta http-equiv="refresh" content="0;url=http://evil/">', /meta|refresh|evil/i],
    ['<style>body{background:url(http://evil/)}</style>', /style|evil/i],
    ['<div style="background:url(http://evil/x)">a</div>', /url|evil/i],
    ['<div style="background:u\\72l(http://evil/x)">a</div>', /evil|\\/i],
    ['<link rel=stylesheet href=http://evil/c.css>', /link|evil/i],
    ['<iframe src="http://evil/"></iframe><object data="http://evil/"></object><embed src="http://evil/">', /iframe|object|embed|evil/i],
    ['<svg onload=alert(1)><image href="http://evil/"/></svg>', /svg|onload|evil/i],
    ['<base href="http://evil/">', /base|evil/i],
    ['<img src="http://evil/track.gif">', /evil/i],
    ['<img src="//evil/track.gif">', /evil/i],
    ['<div style="position:fixed;top:0">overlay</div>', /position/i],
    ['<p id="x" class="y">a</p>', /id=|class=/i],
  ];
  for (const [input, forbidden] of vectors) {
    it(`removes the danger from ${input}`, () => {
      expect(sanitizeMailHtml(input)).not.toMatch(forbidden);
    });
  }

  it('keeps ordinary formatting, https images (for the CSP to decide) and inline data images', () => {
    const out = sanitizeMailHtml('<table><tr><td style="color: red; font-weight: bold">Hi</td></tr></table><img src="https://cdn.example/logo.png" alt="logo"><img src="data:image/png;base64,AAAA">');
    expect(out).toContain('<td style="color: red; font-weight: bold">Hi</td>');
    expect(out).toContain('src="https://cdn.example/logo.png"');
    expect(out).toContain('src="data:image/png;base64,AAAA"');
    expect(countRemoteImages(out)).toBe(1);
  });

  it('shows where a safe link pointed, without making it followable', () => {
    expect(sanitizeMailHtml('<a href="https://example.com/x">x</a>')).toBe('<a title="Link, not followed in the archive viewer: https://example.com/x">x</a>');
  });

  it('cleanStyle keeps only harmless declarations', () => {
    expect(cleanStyle('color: red; background: url(x); font-size: 12px; behavior: url(x.htc)')).toBe('color: red; font-size: 12px');
  });
});

describe('viewer document and CSP', () => {
  it('blocks everything remote unless images are asked for, and then only https images', () => {
    expect(viewerCsp(false)).toBe("default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox");
    expect(viewerCsp(true)).toContain('img-src data: cid: https:;');
  });

  it('escapes a plain-text body', () => {
    expect(viewerDocument({ text: '<script>x</script>', truncated: false })).toContain('<pre class="plain">&lt;script&gt;x&lt;/script&gt;</pre>');
  });

  it('extracts the HTML part of a multipart/alternative message', async () => {
    const raw = ['From: a@example.com', 'Content-Type: multipart/alternative; boundary=b', '', '--b', 'Content-Type: text/plain', '', 'plain', '--b', 'Content-Type: text/html', '', '<p>rich</p>', '--b--', ''].join('\r\n');
    const body = await extractBody(Readable.from([Buffer.from(raw)]));
    expect(body.html).toContain('<p>rich</p>');
    expect(body.text).toContain('plain');
  });
});
