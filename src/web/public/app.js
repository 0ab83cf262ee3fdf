// The archive's web UI: plain ES modules, no build step, no framework.
// Every rule (roles, scope, what may be exported) is the server's; the UI
// only hides what the server would refuse anyway. All text from mail is
// put into the page as text nodes, never as HTML; message bodies are shown
// only through the sandboxed, server-sanitised /api/messages/:id/html.

const state = { user: null, csrf: null, api: new Set(), roles: [] };
const main = () => document.getElementById('main');

// ---------- DOM helpers

/** h('tag', {attr: value, onclick: fn}, ...children): children are nodes or strings (as text). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function render(...children) {
  const m = main();
  m.replaceChildren();
  append(m, children);
  const title = m.querySelector('h1')?.textContent;
  document.title = title ? `${title} · Mail archive` : 'Mail archive';
  // After an in-page navigation, keyboard and screen-reader users start at the new content.
  if (state.navigated && !m.contains(document.activeElement)) m.focus({ preventScroll: true });
}
function toast(text) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 5000);
}
/** A snippet from the server holds escaped text and <mark> only; rebuilt here as nodes so nothing else could ever render. */
function snippetNodes(html) {
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, 'text/html');
  const out = [];
  for (const n of doc.body.childNodes) {
    if (n.nodeType === Node.ELEMENT_NODE && n.nodeName === 'MARK') out.push(h('mark', {}, n.textContent));
    else out.push(n.textContent);
  }
  return out;
}
function person(p) {
  if (!p) return '';
  return p.name ? `${p.name} <${p.address}>` : p.address;
}
function people(list) {
  return (list ?? []).map(person).join(', ');
}
function fmtDate(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}
function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(1)} GB`;
}
function has(...roles) {
  return state.roles.some((r) => roles.includes(r));
}

// ---------- API

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.details = body?.error?.details;
  }
}

function csrfCookie() {
  const m = document.cookie.match(/(?:^|;\s*)(?:__Host-)?archive_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : null;
}

/** Calls the API with the session cookie (and the CSRF token on state-changing calls). A 401 means the session ended: to sign-in, keeping the page. */
async function api(path, { method = 'GET', body, allow401 = false } = {}) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = state.csrf ?? csrfCookie() ?? '';
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (res.status === 401 && !allow401) {
    sessionEnded();
    throw new ApiError(401, data);
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function sessionEnded() {
  state.user = null;
  const here = location.pathname + location.search;
  if (location.pathname !== '/sign-in') go(`/sign-in?expired=1&next=${encodeURIComponent(here)}`, { replace: true });
}

// ---------- routing

function go(url, { replace = false } = {}) {
  state.navigated = true;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest?.('a[data-link]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  go(a.getAttribute('href'));
});
window.addEventListener('popstate', () => route());
// "/" jumps to the query box (as in many search tools), unless one is typing already.
document.addEventListener('keydown', (e) => {
  if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t instanceof HTMLElement && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName))) return;
  const q = document.getElementById('q');
  if (q) {
    e.preventDefault();
    q.focus();
  }
});

const NAV = [
  { path: '/search', label: 'Search', show: () => has('officer', 'reviewer') },
  { path: '/exports', label: 'Exports', show: () => has('officer') },
  { path: '/cases', label: 'Cases & holds', show: () => has('officer', 'admin', 'auditor') },
  { path: '/retention', label: 'Retention', show: () => has('officer', 'admin', 'auditor') },
  { path: '/reports', label: 'Reports', show: () => has('auditor', 'officer', 'admin') },
  { path: '/audit', label: 'Audit trail', show: () => has('auditor') },
  { path: '/admin', label: 'Administration', show: () => has('admin') },
];

/** Where each kind of user starts: reading mail, auditing, or administering. */
function home() {
  if (has('officer', 'reviewer')) return '/search';
  if (has('auditor')) return '/audit';
  if (has('admin')) return '/admin';
  return '/search';
}

function drawChrome() {
  const top = document.getElementById('top');
  top.hidden = !state.user;
  if (!state.user) return;
  const nav = document.getElementById('nav');
  nav.replaceChildren(
    ...NAV.filter((n) => n.show()).map((n) =>
      h('a', { href: n.path, 'data-link': true, 'aria-current': location.pathname === n.path || (n.path === '/search' && location.pathname.startsWith('/messages/')) ? 'page' : null }, n.label),
    ),
  );
  document.getElementById('who').textContent = `${state.user.email} · ${state.roles.join(', ')}`;
}

async function route() {
  const path = location.pathname;
  if (path === '/sign-in') {
    drawChrome();
    return signInPage();
  }
  if (!state.user) {
    const ok = await loadMe();
    if (!ok) return;
  }
  drawChrome();
  if (state.mustChangePassword) return passwordPage();
  try {
    if (path === '/' || path === '') return go(home(), { replace: true });
    if (path === '/search') return await searchPage();
    const m = path.match(/^\/messages\/([0-9a-f]{64})$/);
    if (m) return await messagePage(m[1]);
    if (path === '/exports') return await exportsPage();
    if (path === '/cases') return await casesPage();
    if (path === '/retention') return await retentionPage();
    if (path === '/reports') return await reportsPage();
    if (path === '/audit') return await auditPage();
    if (path === '/admin') return await adminPage();
    render(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: home(), 'data-link': true }, 'Go to the start page')));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    render(h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, err.message));
  }
}

async function loadMe() {
  try {
    const me = await api('/api/auth/me', { allow401: true });
    state.user = me.user;
    state.roles = me.user.roles ?? [];
    state.csrf = me.csrf ?? csrfCookie();
    state.mustChangePassword = !!me.mustChangePassword;
    await loadApiPaths();
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const here = location.pathname + location.search;
      go(`/sign-in${here && here !== '/' ? `?next=${encodeURIComponent(here)}` : ''}`, { replace: true });
      return false;
    }
    render(h('h1', {}, 'The archive is not reachable'), h('p', { class: 'error', role: 'alert' }, err.message));
    return false;
  }
}

/** Which API routes this server offers: pages for parts that are not there yet say so instead of failing. */
async function loadApiPaths() {
  try {
    const doc = await fetch('/api/openapi.json').then((r) => r.json());
    state.api = new Set(Object.keys(doc.paths ?? {}).flatMap((p) => Object.keys(doc.paths[p]).map((m) => `${m.toUpperCase()} ${p}`)));
  } catch {
    state.api = new Set();
  }
}
function offers(method, path) {
  return state.api.has(`${method} ${path}`);
}

document.getElementById('sign-out').addEventListener('click', async () => {
  await api('/api/auth/sign-out', { method: 'POST' }).catch(() => undefined);
  state.user = null;
  go('/sign-in', { replace: true });
});

// ---------- sign-in

function safeNext(next) {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : null;
}

async function signInPage() {
  const params = new URLSearchParams(location.search);
  const next = safeNext(params.get('next'));
  const msg = h('p', { class: 'error', role: 'alert', id: 'signin-error' });
  const totp = h('label', { hidden: true }, 'One-time code', h('input', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code' }));
  const form = h(
    'form',
    { 'aria-describedby': 'signin-error' },
    h('label', {}, 'E-mail', h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true, autofocus: true })),
    h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    totp,
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'),
    msg,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.textContent = '';
    const f = new FormData(form);
    const body = { email: f.get('email'), password: f.get('password') };
    if (f.get('totp')) body.totp = f.get('totp');
    try {
      const r = await api('/api/auth/sign-in', { method: 'POST', body, allow401: true });
      state.user = null;
      state.csrf = r.csrf;
      go(next ?? '/', { replace: true });
    } catch (err) {
      if (err.code === 'totp_required') {
        totp.hidden = false;
        totp.querySelector('input').focus();
      }
      msg.textContent = err.message;
    }
  });
  const providers = await fetch('/api/auth/providers').then((r) => r.json()).catch(() => null);
  render(
    h(
      'div',
      { class: 'signin card' },
      h('h1', {}, 'Sign in to the mail archive'),
      params.get('expired') ? h('p', { class: 'banner', role: 'status' }, 'Your session has ended. Sign in again to go back to where you were.') : null,
      form,
      providers?.oidc?.enabled ? h('p', {}, h('a', { class: 'button', href: `${providers.oidc.loginUrl}?returnTo=${encodeURIComponent(next ?? '/')}` }, 'Sign in with single sign-on')) : null,
    ),
  );
}

function passwordPage() {
  const msg = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    {},
    h('label', {}, 'One-time password', h('input', { name: 'current', type: 'password', required: true, autocomplete: 'current-password' })),
    h('label', {}, 'New password', h('input', { name: 'next', type: 'password', required: true, autocomplete: 'new-password' })),
    h('button', { class: 'primary', type: 'submit' }, 'Set password'),
    msg,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      await api('/api/auth/password', { method: 'POST', body: { currentPassword: f.get('current'), newPassword: f.get('next') } });
      state.user = null;
      toast('Password changed');
      go(location.pathname + location.search, { replace: true });
    } catch (err) {
      msg.textContent = err.message;
    }
  });
  render(h('div', { class: 'signin card' }, h('h1', {}, 'Choose a new password'), form));
}

// ---------- search

function searchUrl(p) {
  const u = new URLSearchParams();
  if (p.q) u.set('q', p.q);
  if (p.sort && p.sort !== 'date') u.set('sort', p.sort);
  if (p.order && p.order !== 'desc') u.set('order', p.order);
  if (p.size && p.size !== 50) u.set('size', String(p.size));
  if (p.cursor) u.set('cursor', p.cursor);
  if (p.page && p.page > 1) u.set('page', String(p.page));
  const s = u.toString();
  return `/search${s ? `?${s}` : ''}`;
}

/** One term for a facet value: quoted (quotes and backslashes escaped) when it is not a plain token. */
function term(field, value) {
  return /^[\w.@+-]+$/.test(value) ? `${field}:${value}` : `${field}:"${value.replace(/["\\]/g, '\\$&')}"`;
}
function addTerm(q, t) {
  q = q.trim();
  return q ? `${q} ${t}` : t;
}

async function searchPage() {
  const params = new URLSearchParams(location.search);
  const p = { q: params.get('q') ?? '', sort: params.get('sort') ?? 'date', order: params.get('order') ?? 'desc', cursor: params.get('cursor') ?? undefined, page: Number(params.get('page') ?? '1') || 1, size: Math.min(500, Math.max(1, Number(params.get('size') ?? '50') || 50)) };

  const qbox = h('textarea', { id: 'q', name: 'q', class: 'qbox', rows: 2, 'aria-describedby': 'q-help q-error', spellcheck: 'false' });
  qbox.value = p.q;
  const qerr = h('div', { id: 'q-error', role: 'alert' });
  const sortSel = h('select', { name: 'sort', id: 'sort' }, h('option', { value: 'date' }, 'Date'), h('option', { value: 'relevance' }, 'Relevance'));
  sortSel.value = p.sort;
  const orderSel = h('select', { name: 'order', id: 'order' }, h('option', { value: 'desc' }, 'Newest first / best first'), h('option', { value: 'asc' }, 'Oldest first'));
  orderSel.value = p.order;
  const sizeSel = h('select', { name: 'size', id: 'size' }, [10, 25, 50, 100, 200].map((n) => h('option', { value: String(n) }, String(n))));
  if (![10, 25, 50, 100, 200].includes(p.size)) sizeSel.append(h('option', { value: String(p.size) }, String(p.size)));
  sizeSel.value = String(p.size);
  const form = h(
    'form',
    { role: 'search', 'aria-label': 'Search the archive', class: 'card' },
    h('label', { for: 'q', class: 'qlabel' }, 'Query'),
    h('div', { class: 'row' }, h('div', { class: 'grow' }, qbox), h('button', { class: 'primary', type: 'submit' }, 'Search')),
    h('p', { id: 'q-help', class: 'muted' }, 'Example: ', h('code', {}, 'participant:alice@example.com date:2023 -from:newsletter@example.com "budget approval"~5 has:attachment'), ' · Press Enter to search, Shift+Enter for a new line.'),
    qerr,
    h('div', { class: 'row' }, h('label', {}, 'Sort by', sortSel), h('label', {}, 'Order', orderSel), h('label', {}, 'Per page', sizeSel)),
    builder(qbox),
  );
  qbox.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go(searchUrl({ q: qbox.value.trim(), sort: sortSel.value, order: orderSel.value, size: Number(sizeSel.value) }));
  });

  const facetsEl = h('aside', { class: 'facets', 'aria-label': 'Refine' });
  const resultsEl = h('section', { 'aria-label': 'Results', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Searching…'));
  render(h('h1', {}, 'Search'), form, h('div', { class: 'search-layout' }, facetsEl, resultsEl));

  let res;
  try {
    const u = new URLSearchParams({ q: p.q, sort: p.sort, order: p.order, size: String(p.size) });
    if (p.cursor) u.set('cursor', p.cursor);
    res = await api(`/api/search?${u}`);
  } catch (err) {
    if (err.status === 401) throw err;
    resultsEl.replaceChildren();
    if (err.code === 'query_syntax') {
      const pos = Math.max(0, Math.min(p.q.length, Number(err.details?.position ?? 0)));
      qerr.replaceChildren(
        h('p', { class: 'error' }, `Syntax error at position ${pos}: ${err.details?.reason ?? err.message}`),
        h('div', { class: 'qerror', 'aria-hidden': 'true' }, p.q.slice(0, pos), h('span', { class: 'at' }, p.q.slice(pos, pos + 1) || ' '), p.q.slice(pos + 1)),
      );
      qbox.setAttribute('aria-invalid', 'true');
      qbox.focus();
      qbox.setSelectionRange(pos, Math.min(p.q.length, pos + 1));
    } else {
      qerr.replaceChildren(h('p', { class: 'error' }, err.message));
    }
    return;
  }

  // Facets: a click adds the term to the query.
  const facetGroup = (title, buckets, field) =>
    buckets?.length
      ? [
          h('h2', {}, title),
          h(
            'ul',
            {},
            buckets.slice(0, 10).map((b) =>
              h(
                'li',
                {},
                h('button', { type: 'button', class: 'facet', 'data-facet': `${field}:${b.value}`, 'aria-label': `Refine by ${title.toLowerCase()} ${b.value} (${b.count})`, onclick: () => go(searchUrl({ ...p, cursor: undefined, page: 1, q: addTerm(p.q, term(field, b.value)) })) }, h('span', {}, b.value), h('span', { class: 'muted' }, String(b.count))),
              ),
            ),
          ),
        ]
      : [];
  facetsEl.replaceChildren(
    ...append(h('div'), [facetGroup('Senders', res.facets?.senders, 'from'), facetGroup('Domains', res.facets?.domains, 'domain'), facetGroup('Years', res.facets?.years, 'date')]).childNodes,
  );

  const sortHeader = (label) => {
    const active = p.sort === 'date';
    const next = active && p.order === 'desc' ? 'asc' : 'desc';
    return h('th', { 'aria-sort': active ? (p.order === 'asc' ? 'ascending' : 'descending') : 'none' }, h('button', { type: 'button', class: 'sort', onclick: () => go(searchUrl({ ...p, cursor: undefined, page: 1, sort: 'date', order: next })) }, label, active ? (p.order === 'asc' ? ' ▲' : ' ▼') : ''));
  };
  const table = h(
    'table',
    { id: 'results' },
    h('caption', { class: 'muted caption' }, `${res.total.toLocaleString('en')} message${res.total === 1 ? '' : 's'}${p.page > 1 ? ` · page ${p.page}` : ''}`),
    h('thead', {}, h('tr', {}, sortHeader('Date'), h('th', {}, 'From'), h('th', {}, 'Subject and text'), h('th', {}, 'Size'))),
    h(
      'tbody',
      {},
      res.hits.map((hit) =>
        h(
          'tr',
          { class: 'hit' },
          h('td', { class: 'nowrap' }, fmtDate(hit.date)),
          h('td', {}, people(hit.from)),
          h(
            'td',
            {},
            h('a', { href: `/messages/${hit.id}`, 'data-link': true, class: 'subject' }, hit.subject || '(no subject)'),
            hit.hasAttachments ? h('span', { class: 'badge', title: 'Has attachments' }, '📎 attachment') : null,
            hit.parseError ? h('span', { class: 'badge', title: hit.parseError }, 'unparsed') : null,
            h('div', { class: 'snippet' }, snippetNodes(hit.snippet ?? '')),
          ),
          h('td', { class: 'nowrap' }, fmtBytes(hit.size)),
        ),
      ),
    ),
  );
  const pager = h(
    'nav',
    { class: 'pager', 'aria-label': 'Pages' },
    p.page > 1 ? h('button', { type: 'button', onclick: () => history.back() }, '← Previous page') : null,
    res.nextCursor ? h('button', { type: 'button', id: 'next-page', onclick: () => go(searchUrl({ ...p, cursor: res.nextCursor, page: p.page + 1 })) }, 'Next page →') : null,
    has('officer') ? h('a', { class: 'button', id: 'export-results', href: `/exports?q=${encodeURIComponent(p.q)}`, 'data-link': true }, 'Export these results…') : null,
  );
  resultsEl.replaceChildren(res.hits.length ? table : h('p', {}, 'No messages match.'), pager);
}

function builder(qbox) {
  const f = {
    participants: h('input', { name: 'participants', placeholder: 'alice@example.com, @acme.org' }),
    from: h('input', { name: 'from', type: 'date' }),
    to: h('input', { name: 'to', type: 'date' }),
    att: h('input', { name: 'att', type: 'checkbox' }),
    words: h('input', { name: 'words', placeholder: 'merger "budget approval"' }),
  };
  const add = () => {
    const parts = [];
    for (const a of f.participants.value.split(/[,\s]+/).filter(Boolean)) parts.push(`participant:${a}`);
    if (f.from.value && f.to.value) parts.push(`date:${f.from.value}..${f.to.value}`);
    else if (f.from.value) parts.push(`after:${f.from.value}`);
    else if (f.to.value) parts.push(`date:1970-01-01..${f.to.value}`);
    if (f.att.checked) parts.push('has:attachment');
    if (f.words.value.trim()) parts.push(f.words.value.trim());
    if (!parts.length) return;
    qbox.value = addTerm(qbox.value, parts.join(' '));
    qbox.form.requestSubmit();
  };
  return h(
    'details',
    { id: 'builder' },
    h('summary', {}, 'Query builder'),
    h(
      'div',
      { class: 'row spaced' },
      h('label', {}, 'Participants (sender or any recipient)', f.participants),
      h('label', {}, 'Date from', f.from),
      h('label', {}, 'Date to', f.to),
      h('label', { class: 'inline' }, f.att, 'Has attachment'),
      h('label', {}, 'Words or phrases', f.words),
      h('button', { type: 'button', onclick: add }, 'Add to query and search'),
    ),
  );
}

// ---------- message view

async function messagePage(id) {
  render(h('p', { class: 'muted' }, 'Loading message…'));
  const m = await api(`/api/messages/${id}`);
  const back = document.referrer.includes('/search') || history.length > 1 ? h('button', { type: 'button', class: 'link', onclick: () => history.back() }, '← Back to results') : h('a', { href: '/search', 'data-link': true }, '← Search');
  const hdr = (label, value) => (value ? [h('dt', {}, label), h('dd', {}, value)] : []);
  const integrity = h('span', { id: 'integrity', role: 'status' }, 'Checking integrity…');
  const recipients = h(
    'ul',
    { class: 'plain', id: 'envelope-recipients' },
    (m.envelopeRecipients ?? []).map((r) =>
      h(
        'li',
        {},
        r.address,
        r.kind === 'bcc' ? h('span', { class: 'badge bcc', title: 'Blind copy: not visible to the other recipients' }, 'Bcc') : h('span', { class: 'badge' }, r.kind),
        r.expandedFrom ? h('span', { class: 'badge exp', title: `Member of the distribution list ${r.expandedFrom}` }, `expanded from ${r.expandedFrom}`) : null,
        r.forwardedFrom ? h('span', { class: 'badge', title: 'Forwarded copy' }, `forwarded from ${r.forwardedFrom}`) : null,
      ),
    ),
  );
  const frame = h('iframe', {
    class: 'body',
    id: 'body-frame',
    title: 'Message body (sanitised; scripts, forms and remote content are blocked)',
    sandbox: '',
    referrerpolicy: 'no-referrer',
    src: `/api/messages/${id}/html`,
  });
  const plain = h('pre', { class: 'plain', id: 'body-text', hidden: true }, m.body || '(no text)');
  const imagesBtn = h('button', { type: 'button', id: 'load-images', 'aria-describedby': 'images-note' }, 'Load remote images');
  imagesBtn.addEventListener('click', () => {
    frame.src = `/api/messages/${id}/html?images=1`;
    imagesBtn.disabled = true;
    imagesBtn.textContent = 'Remote images loaded';
  });
  const tabFormatted = h('button', { type: 'button', role: 'tab', 'aria-selected': 'true', 'aria-controls': 'body-frame' }, 'Formatted');
  const tabText = h('button', { type: 'button', role: 'tab', 'aria-selected': 'false', 'aria-controls': 'body-text' }, 'Plain text');
  const select = (formatted) => {
    frame.hidden = !formatted;
    plain.hidden = formatted;
    tabFormatted.setAttribute('aria-selected', String(formatted));
    tabText.setAttribute('aria-selected', String(!formatted));
  };
  tabFormatted.addEventListener('click', () => select(true));
  tabText.addEventListener('click', () => select(false));
  const thread = h('ul', { class: 'plain thread', id: 'thread' }, h('li', { class: 'muted' }, 'Loading…'));

  render(
    back,
    h('h1', { id: 'subject' }, m.subject || '(no subject)'),
    m.parseError ? h('p', { class: 'banner' }, `This message could not be fully parsed (${m.parseError}); it is shown from its headers and envelope. The original bytes are kept unchanged.`) : null,
    h(
      'div',
      { class: 'msg-layout' },
      h(
        'div',
        {},
        h(
          'section',
          { class: 'card', 'aria-label': 'Headers' },
          h('dl', { class: 'headers' }, hdr('From', people(m.from)), hdr('Sender', people(m.sender)), hdr('To', people(m.to)), hdr('Cc', people(m.cc)), hdr('Bcc', people(m.bcc)), hdr('Reply-To', people(m.replyTo)), hdr('Date', fmtDate(m.date)), hdr('Received', fmtDate(m.receivedAt)), hdr('Message-ID', m.messageId)),
          h('details', {}, h('summary', {}, `All headers (${m.headers.length})`), h('table', {}, h('tbody', {}, m.headers.map((x) => h('tr', {}, h('th', { scope: 'row' }, x.name), h('td', { class: 'mono' }, x.value)))))),
        ),
        h(
          'section',
          { class: 'card', 'aria-label': 'Body' },
          h('div', { class: 'row between' }, h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Body view' }, tabFormatted, tabText), imagesBtn),
          h('p', { class: 'muted', id: 'images-note' }, 'Shown sanitised in a sandbox: scripts, forms and links never run; remote images are blocked until you load them.'),
          frame,
          plain,
        ),
      ),
      h(
        'div',
        {},
        h(
          'section',
          { class: 'card', 'aria-label': 'Evidence' },
          h('h2', {}, 'Original'),
          h('p', {}, h('a', { class: 'button primary', id: 'download-raw', href: `/api/messages/${id}/raw`, download: `${id}.eml` }, 'Download original (.eml)')),
          h('p', { class: 'mono' }, `SHA-256 ${m.sha256}`),
          h('p', {}, integrity),
          h('p', { class: 'muted' }, `${fmtBytes(m.size)}`),
        ),
        h('section', { class: 'card', 'aria-label': 'Envelope recipients' }, h('h2', {}, `Envelope recipients (${m.envelopeRecipients.length})`), h('p', { class: 'muted' }, 'Everyone the message was delivered to, including Bcc and members of expanded distribution lists.'), recipients),
        h(
          'section',
          { class: 'card', 'aria-label': 'Attachments' },
          h('h2', {}, `Attachments (${m.attachments.length})`),
          m.attachments.length
            ? h('ul', { class: 'plain', id: 'attachments' }, m.attachments.map((a) => h('li', {}, h('a', { href: `/api/messages/${id}/attachments/${a.index}`, download: a.filename ?? `attachment-${a.index}` }, a.filename ?? `attachment ${a.index + 1}`), ' ', h('span', { class: 'muted' }, `${a.contentType}, ${fmtBytes(a.size)}`))))
            : h('p', { class: 'muted' }, 'None.'),
        ),
        h('section', { class: 'card', 'aria-label': 'Thread' }, h('h2', {}, 'Thread'), thread),
      ),
    ),
  );
  main().focus();

  api(`/api/messages/${id}/integrity`).then(
    (r) => {
      integrity.className = r.verified ? 'ok' : 'error';
      integrity.textContent = r.verified ? `✔ Integrity verified: the stored bytes match their SHA-256 (${fmtDate(r.checkedAt)})` : '✖ INTEGRITY FAILURE: the stored bytes do not match their SHA-256';
    },
    (err) => {
      integrity.className = 'error';
      integrity.textContent = `Integrity could not be checked: ${err.message}`;
    },
  );
  api(`/api/messages/${id}/thread`).then(
    (t) =>
      thread.replaceChildren(
        ...t.messages.map((x) => h('li', { class: x.id === id ? 'current' : '' }, x.id === id ? `${fmtDate(x.date)} · ${person(x.from[0])} · ${x.subject || '(no subject)'} (this message)` : h('a', { href: `/messages/${x.id}`, 'data-link': true }, `${fmtDate(x.date)} · ${person(x.from[0])} · ${x.subject || '(no subject)'}`))),
      ),
    (err) => thread.replaceChildren(h('li', { class: 'error' }, err.message)),
  );
}

// ---------- exports

async function exportsPage() {
  const params = new URLSearchParams(location.search);
  const msg = h('p', { role: 'alert', class: 'error' });
  const q = h('textarea', { name: 'q', id: 'export-q', class: 'qbox', rows: 2 });
  q.value = params.get('q') ?? '';
  const form = h(
    'form',
    { class: 'card', id: 'export-form', 'aria-label': 'New export' },
    h('h2', {}, 'New export'),
    h('label', { for: 'export-q' }, 'Query (empty: everything you may see)'),
    q,
    h(
      'div',
      { class: 'row spaced' },
      h('label', {}, 'Format', h('select', { name: 'format', id: 'export-format' }, h('option', { value: 'eml' }, 'EML (native files)'), h('option', { value: 'mbox' }, 'MBOX'), h('option', { value: 'pdf' }, 'PDF, Bates-numbered'), h('option', { value: 'load' }, 'Load file production (DAT/OPT/EDRM)'))),
      h('label', {}, 'Bates prefix', h('input', { name: 'prefix', value: 'ARCH', size: 10 })),
      h('label', {}, 'Bates start', h('input', { name: 'start', type: 'number', value: '1', min: '0' })),
      h('label', {}, 'Digits', h('input', { name: 'padding', type: 'number', value: '7', min: '1', max: '15' })),
      h('label', {}, 'PDF legend', h('input', { name: 'legend', placeholder: 'CONFIDENTIAL' })),
      h('label', {}, 'De-duplication', h('select', { name: 'dedup' }, h('option', { value: 'none' }, 'None'), h('option', { value: 'global' }, 'Global'), h('option', { value: 'custodian' }, 'Per custodian'))),
      h('label', {}, 'Custodians (comma-separated)', h('input', { name: 'custodians' })),
      h('button', { class: 'primary', type: 'submit', id: 'start-export' }, 'Start export'),
    ),
    msg,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.textContent = '';
    const f = new FormData(form);
    const body = {
      source: { kind: 'query', q: String(f.get('q') ?? '').trim() },
      format: f.get('format'),
      bates: { prefix: f.get('prefix') || 'ARCH', start: Number(f.get('start') || 1), padding: Number(f.get('padding') || 7) },
      pdf: f.get('legend') ? { legend: String(f.get('legend')) } : {},
      dedup: f.get('dedup'),
      custodians: String(f.get('custodians') ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    };
    try {
      await api('/api/exports', { method: 'POST', body });
      toast('Export started');
      await refresh();
    } catch (err) {
      msg.textContent = err.message;
    }
  });
  const list = h('section', { 'aria-label': 'Your exports', 'aria-live': 'polite' });
  render(h('h1', {}, 'Exports'), form, h('h2', {}, 'Your exports'), list);

  let timer;
  const refresh = async () => {
    clearTimeout(timer);
    if (location.pathname !== '/exports') return;
    const { exports } = await api('/api/exports?limit=50');
    list.replaceChildren(
      exports.length
        ? h(
            'table',
            { id: 'exports' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Started'), h('th', {}, 'Query'), h('th', {}, 'Format'), h('th', {}, 'Status'), h('th', {}, 'Progress'), h('th', {}, ''))),
            h(
              'tbody',
              {},
              exports.map((x) => {
                const total = x.progress?.itemsTotal ?? 0;
                const done = x.progress?.itemsDone ?? 0;
                return h(
                  'tr',
                  { 'data-export': x.id, 'data-status': x.status },
                  h('td', {}, fmtDate(x.createdAt)),
                  h('td', { class: 'mono' }, x.source?.q || '(everything)'),
                  h('td', {}, x.format),
                  h('td', { class: x.status === 'failed' ? 'error' : '' }, x.status, x.error ? ` — ${x.error.message ?? x.error}` : ''),
                  h('td', {}, h('progress', { max: String(Math.max(total, 1)), value: String(x.status === 'done' ? Math.max(total, 1) : done), 'aria-label': `Progress of ${x.id}` }), ` ${done}/${total} · ${x.progress?.phase ?? ''}`),
                  h(
                    'td',
                    {},
                    x.download ? h('a', { class: 'button', href: x.download, download: true, 'data-download': x.id }, 'Download') : null,
                    ['queued', 'running'].includes(x.status)
                      ? h('button', { type: 'button', onclick: async () => { await api(`/api/exports/${x.id}/cancel`, { method: 'POST' }).catch((e) => toast(e.message)); await refresh(); } }, 'Cancel')
                      : null,
                  ),
                );
              }),
            ),
          )
        : h('p', { class: 'muted' }, 'No exports yet.'),
    );
    if (exports.some((x) => ['queued', 'running'].includes(x.status))) timer = setTimeout(() => refresh().catch(() => undefined), 1000);
  };
  await refresh();
}

// ---------- parts whose API may not exist yet

function notYet(title, what) {
  render(h('h1', {}, title), h('p', { class: 'banner', role: 'status' }, `${what} This archive server does not offer that API yet; the page appears here once it does.`));
}

const csv = (v) => String(v ?? '').split(/[,\s]+/).map((x) => x.trim()).filter(Boolean);
function dl(href, label, attrs = {}) {
  return h('a', { class: 'button', href, download: true, ...attrs }, label);
}

async function casesPage() {
  if (!offers('GET', '/api/cases')) return notYet('Cases & holds', 'Cases, custodians and legal holds are managed here.');
  const id = new URLSearchParams(location.search).get('id');
  if (id) return casePage(id);
  const { cases } = await api('/api/cases');
  const msg = h('p', { role: 'alert', class: 'error' });
  const form = h(
    'form',
    { class: 'card', id: 'case-form', 'aria-label': 'Open a case' },
    h('h2', {}, 'Open a case'),
    h(
      'div',
      { class: 'row' },
      h('label', {}, 'Case name', h('input', { name: 'name', required: true })),
      h('label', {}, 'Matter number', h('input', { name: 'matterNumber', required: true })),
      h('label', {}, 'Description', h('input', { name: 'description' })),
      h('label', {}, 'Custodians (comma-separated addresses)', h('input', { name: 'custodians', size: 40 })),
      h('button', { class: 'primary', type: 'submit' }, 'Open case'),
    ),
    msg,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      const c = await api('/api/cases', { method: 'POST', body: { name: f.get('name'), matterNumber: f.get('matterNumber'), description: f.get('description') || undefined, custodians: csv(f.get('custodians')) } });
      go(`/cases?id=${encodeURIComponent(c.id)}`);
    } catch (err) {
      msg.textContent = err.message;
    }
  });
  render(
    h('h1', {}, 'Cases & holds'),
    has('officer') ? form : null,
    h('h2', {}, 'Cases'),
    cases.length
      ? h('table', { id: 'cases' }, h('thead', {}, h('tr', {}, ['Matter', 'Name', 'Custodians', 'Status', 'Opened'].map((x) => h('th', {}, x)))), h('tbody', {}, cases.map((c) => h('tr', {}, h('td', {}, h('a', { href: `/cases?id=${encodeURIComponent(c.id)}`, 'data-link': true }, c.matterNumber)), h('td', {}, c.name), h('td', {}, (c.custodians ?? []).join(', ')), h('td', {}, c.status), h('td', {}, `${fmtDate(c.createdAt)} by ${c.createdBy}`)))))
      : h('p', { class: 'muted' }, 'No cases yet.'),
  );
}

async function casePage(id) {
  const { case: c, holds } = await api(`/api/cases/${encodeURIComponent(id)}`);
  const msg = h('p', { role: 'status', id: 'hold-result' });
  const custodians = h('input', { name: 'custodians', size: 40 });
  custodians.value = (c.custodians ?? []).join(', ');
  const form = h(
    'form',
    { class: 'card', id: 'hold-form', 'aria-label': 'Place a legal hold' },
    h('h2', {}, 'Place a legal hold'),
    h('p', { class: 'muted' }, 'Covers existing and future mail of the custodians (sent, received, Bcc, expanded lists) and/or a query, within your scope.'),
    h(
      'div',
      { class: 'row' },
      h('label', {}, 'Hold name', h('input', { name: 'name', required: true, value: `${c.matterNumber} hold` })),
      h('label', {}, 'Custodians', custodians),
      h('label', {}, 'Query (optional)', h('input', { name: 'query', size: 30 })),
      h('label', {}, 'Mail dated from', h('input', { name: 'dateFrom', type: 'date' })),
      h('label', {}, 'to', h('input', { name: 'dateTo', type: 'date' })),
      h('button', { class: 'primary', type: 'submit', id: 'place-hold' }, 'Place hold'),
    ),
    msg,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { name: f.get('name'), custodians: csv(f.get('custodians')) };
    if (f.get('query')) body.query = f.get('query');
    if (f.get('dateFrom')) body.dateFrom = f.get('dateFrom');
    if (f.get('dateTo')) body.dateTo = f.get('dateTo');
    if (!body.custodians.length) delete body.custodians;
    try {
      const hold = await api(`/api/cases/${encodeURIComponent(id)}/holds`, { method: 'POST', body });
      toast(
        !hold.applyPending
          ? `Hold placed: ${hold.messageCount} messages held`
          : hold.lastApplyError
            ? `Hold placed and in force; applying it to archived mail did not finish (${hold.lastApplyError}): it resumes automatically`
            : `Hold placed and in force; it is still being applied to archived mail (${hold.messageCount} so far) and goes on in the background`,
      );
      await casePage(id);
    } catch (err) {
      msg.className = 'error';
      msg.textContent = err.message;
    }
  });
  // Placed (and in force) but not yet applied to every archived message: the disposition job resumes it.
  const applyBadge = (hold) =>
    hold.status === 'active' && hold.applyPending ? h('span', { class: 'badge warn', title: hold.lastApplyError ?? '' }, hold.lastApplyError ? 'applying to archived mail: retrying' : 'applying to archived mail…') : null;
  const releaseCell = (hold) => {
    if (hold.status !== 'active' || !has('officer')) {
      if (hold.status !== 'released') return '';
      const text = `released ${fmtDate(hold.releasedAt)} by ${hold.releasedBy}: ${hold.releaseReason ?? ''}`;
      // Flags the storage would not clear yet: those messages stay held until the disposition job's retry succeeds.
      return hold.clearsPending ? h('span', {}, text, ' ', h('span', { class: 'badge warn', title: hold.lastClearError ?? '' }, 'clearing legal-hold flags: retrying')) : text;
    }
    const reason = h('input', { name: 'reason', required: true, placeholder: 'Reason (required)', 'aria-label': `Reason to release ${hold.name}` });
    const f = h('form', { class: 'row' }, reason, h('button', { type: 'submit' }, 'Release'));
    f.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const r = await api(`/api/holds/${encodeURIComponent(hold.id)}/release`, { method: 'POST', body: { reason: reason.value } });
        toast(r.pending ? `Hold released; ${r.pending} messages stay held until their storage flag clears (retried automatically)` : 'Hold released');
        await casePage(id);
      } catch (err) {
        toast(err.message);
      }
    });
    return f;
  };
  const exportQ = (c.custodians ?? []).length ? `(${c.custodians.map((x) => `participant:${x}`).join(' OR ')})` : '';
  render(
    h('p', {}, h('a', { href: '/cases', 'data-link': true }, '← All cases')),
    h('h1', {}, `${c.matterNumber}: ${c.name}`),
    c.description ? h('p', {}, c.description) : null,
    h('p', { class: 'muted' }, `Custodians: ${(c.custodians ?? []).join(', ') || 'none'} · ${c.status} · opened ${fmtDate(c.createdAt)} by ${c.createdBy}`),
    h(
      'p',
      { class: 'row' },
      has('officer', 'auditor') ? [dl(`/api/reports/holds/${encodeURIComponent(id)}?format=pdf`, 'Hold report (PDF)'), dl(`/api/reports/holds/${encodeURIComponent(id)}?format=csv`, 'Hold report (CSV)')] : null,
      has('officer') && exportQ ? h('a', { class: 'button', href: `/exports?q=${encodeURIComponent(exportQ)}`, 'data-link': true }, "Export the custodians' mail…") : null,
    ),
    h('h2', {}, 'Holds'),
    holds.length
      ? h('table', { id: 'holds' }, h('thead', {}, h('tr', {}, ['Hold', 'Custodians', 'Query', 'Dates', 'Held messages', 'Status'].map((x) => h('th', {}, x)))), h('tbody', {}, holds.map((x) => h('tr', { 'data-hold': x.id, 'data-status': x.status }, h('td', {}, x.name), h('td', {}, (x.custodians ?? []).join(', ')), h('td', { class: 'mono' }, x.query ?? ''), h('td', {}, [x.dateFrom, x.dateTo].filter(Boolean).join(' – ')), h('td', { class: 'held-count' }, String(x.messageCount)), h('td', {}, x.status, ' ', applyBadge(x), releaseCell(x))))))
      : h('p', { class: 'muted' }, 'No holds yet.'),
    has('officer') ? form : null,
  );
}

async function retentionPage() {
  if (!offers('GET', '/api/retention/policies')) return notYet('Retention', 'Retention policies, the simulator and the disposition review queue are managed here.');
  const [{ policies }, pending] = await Promise.all([api('/api/retention/policies'), api('/api/retention/dispositions/pending').catch(() => ({ pending: [] }))]);
  const period = (p) => (p.period.unit === 'forever' ? 'forever' : `${p.period.count} ${p.period.unit} from ${p.period.from}`);
  const matcher = (m) => Object.entries(m ?? {}).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : v}`).join('; ') || 'all mail';
  const editor = () => {
    const out = h('div', { role: 'status', id: 'simulation' });
    const save = h('button', { type: 'button', class: 'primary', disabled: true }, 'Save policy');
    const form = h(
      'form',
      { class: 'card', id: 'policy-form', 'aria-label': 'New retention policy' },
      h('h2', {}, 'New policy'),
      h(
        'div',
        { class: 'row' },
        h('label', {}, 'Name', h('input', { name: 'name', required: true })),
        h('label', {}, 'Senders', h('input', { name: 'senders' })),
        h('label', {}, 'Recipients', h('input', { name: 'recipients' })),
        h('label', {}, 'Custodians', h('input', { name: 'custodians' })),
        h('label', {}, 'Query', h('input', { name: 'query' })),
        h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'hasAttachment' }), 'Only with attachments'),
      ),
      h(
        'div',
        { class: 'row spaced' },
        h('label', {}, 'Keep for', h('input', { name: 'count', type: 'number', min: '0', value: '7' })),
        h('label', {}, 'Unit', h('select', { name: 'unit' }, ['years', 'months', 'days', 'forever'].map((u) => h('option', { value: u }, u)))),
        h('label', {}, 'Counted from', h('select', { name: 'from' }, h('option', { value: 'received' }, 'received'), h('option', { value: 'sent' }, 'sent'))),
        h('label', {}, 'Then', h('select', { name: 'action' }, h('option', { value: 'delete' }, 'delete'), h('option', { value: 'review' }, 'review before deletion'))),
        h('button', { type: 'submit' }, 'Simulate'),
        save,
      ),
      out,
    );
    const input = () => {
      const f = new FormData(form);
      const m = {};
      for (const k of ['senders', 'recipients', 'custodians']) if (csv(f.get(k)).length) m[k] = csv(f.get(k));
      if (f.get('query')) m.query = f.get('query');
      if (f.get('hasAttachment')) m.hasAttachment = true;
      return { name: f.get('name'), matcher: m, period: { unit: f.get('unit'), count: Number(f.get('count') || 0), from: f.get('from') }, action: f.get('action') };
    };
    form.addEventListener('input', () => (save.disabled = true));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const r = await api('/api/retention/policies/simulate', { method: 'POST', body: { policy: input() } });
        const LABELS = { examined: 'Messages examined', governed: 'Governed by this policy', unchanged: 'Retention unchanged', extended: 'Retention extended', keptLonger: 'Kept longer (an applied date is never shortened)', expiredNow: 'Would expire now', held: 'Under legal hold', forever: 'Kept forever' };
        const rows = Object.entries(r ?? {}).filter(([, v]) => typeof v === 'number');
        out.replaceChildren(
          h('h3', {}, 'If saved now'),
          rows.length ? h('table', { class: 'counts' }, h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, LABELS[k] ?? k), h('td', {}, v.toLocaleString('en')))))) : h('pre', { class: 'plain' }, JSON.stringify(r, null, 2)),
        );
        save.disabled = false;
      } catch (err) {
        out.replaceChildren(h('p', { class: 'error' }, err.message));
      }
    });
    save.addEventListener('click', async () => {
      try {
        await api('/api/retention/policies', { method: 'POST', body: input() });
        toast('Policy saved');
        await retentionPage();
      } catch (err) {
        out.replaceChildren(h('p', { class: 'error' }, err.message));
      }
    });
    return form;
  };
  const approve = async (sha) => {
    try {
      const r = await api('/api/retention/dispositions/approve', { method: 'POST', body: { sha256: [sha] } });
      toast(`Approved ${r.approved?.length ?? r.approved ?? ''}`);
      await retentionPage();
    } catch (err) {
      toast(err.message);
    }
  };
  render(
    h('h1', {}, 'Retention'),
    h('table', { id: 'policies' }, h('thead', {}, h('tr', {}, ['Policy', 'Applies to', 'Keep', 'Then', 'Version'].map((x) => h('th', {}, x)))), h('tbody', {}, policies.map((p) => h('tr', {}, h('td', {}, p.name, p.isDefault ? h('span', { class: 'badge' }, 'default') : null), h('td', {}, matcher(p.matcher)), h('td', {}, period(p)), h('td', {}, p.action), h('td', {}, String(p.version)))))),
    has('admin') ? editor() : null,
    h('h2', {}, `Disposition review queue (${pending.pending?.length ?? 0})`),
    pending.pending?.length
      ? h('table', {}, h('tbody', {}, pending.pending.map((x) => h('tr', {}, h('td', { class: 'mono' }, x.sha256 ?? x.id), h('td', {}, x.policyName ?? x.policyId ?? ''), h('td', {}, x.proposedBy ?? ''), h('td', {}, has('admin', 'officer') ? h('button', { type: 'button', onclick: () => approve(x.sha256 ?? x.id) }, 'Approve') : '')))))
      : h('p', { class: 'muted' }, 'Nothing waits for approval.'),
  );
}

async function reportsPage() {
  if (!offers('GET', '/api/reports/retention')) return notYet('Reports', 'The retention report, disposition certificates and hold reports are downloaded here.');
  const today = new Date().toISOString().slice(0, 10);
  const monthAgo = new Date(Date.now() - 30 * 86_400_000).toISOString().slice(0, 10);
  const from = h('input', { type: 'date', name: 'from', value: monthAgo });
  const to = h('input', { type: 'date', name: 'to', value: today });
  const fixity = h('input', { type: 'checkbox', name: 'fixity' });
  const links = h('p', { class: 'row', id: 'report-links' });
  const draw = () => {
    const q = (format, extra = {}) => new URLSearchParams({ from: from.value, to: to.value, format, ...extra }).toString();
    const fx = fixity.checked ? { fixity: 'true' } : {};
    links.replaceChildren(
      ...(has('auditor', 'admin')
        ? [
            dl(`/api/reports/retention?${q('pdf', fx)}`, 'Retention report (PDF)', { id: 'retention-report-pdf' }),
            dl(`/api/reports/retention?${q('csv', fx)}`, 'Retention report (CSV)'),
            dl(`/api/reports/certificate?${q('pdf')}`, 'Disposition certificate (PDF)'),
            dl(`/api/reports/certificate?${q('csv')}`, 'Certificate items (CSV)'),
          ]
        : [h('span', { class: 'muted' }, 'Retention reports and certificates are for auditors.')]),
    );
  };
  for (const el of [from, to, fixity]) el.addEventListener('change', draw);
  draw();
  const cases = has('auditor', 'officer', 'admin') ? await api('/api/cases').catch(() => ({ cases: [] })) : { cases: [] };
  render(
    h('h1', {}, 'Reports'),
    h('section', { class: 'card', 'aria-label': 'Retention and disposition' }, h('h2', {}, 'Retention and disposition'), h('div', { class: 'row' }, h('label', {}, 'From', from), h('label', {}, 'To', to), h('label', { class: 'inline' }, fixity, 'Re-hash the whole store first (slow)')), links),
    has('auditor', 'officer')
      ? h('section', { class: 'card', 'aria-label': 'Legal hold reports' }, h('h2', {}, 'Legal hold reports'), cases.cases.length ? h('ul', { class: 'plain' }, cases.cases.map((c) => h('li', {}, `${c.matterNumber}: ${c.name} `, dl(`/api/reports/holds/${encodeURIComponent(c.id)}?format=pdf`, 'PDF'), ' ', dl(`/api/reports/holds/${encodeURIComponent(c.id)}?format=csv`, 'CSV')))) : h('p', { class: 'muted' }, 'No cases.'))
      : null,
  );
}

// ---------- audit

async function auditPage() {
  const params = new URLSearchParams(location.search);
  const fields = ['user', 'action', 'outcome', 'target', 'from', 'to'];
  const inputs = {
    user: h('input', { name: 'user' }),
    action: h('input', { name: 'action', placeholder: 'message.view', list: 'audit-actions' }),
    outcome: h('select', { name: 'outcome' }, h('option', { value: '' }, 'Any'), h('option', { value: 'success' }, 'success'), h('option', { value: 'failure' }, 'failure'), h('option', { value: 'denied' }, 'denied')),
    target: h('input', { name: 'target' }),
    from: h('input', { name: 'from', placeholder: '2025-01-01T00:00:00Z' }),
    to: h('input', { name: 'to', placeholder: '2025-12-31T23:59:59Z' }),
  };
  for (const k of fields) inputs[k].value = params.get(k) ?? '';
  const form = h(
    'form',
    { class: 'card', 'aria-label': 'Filter the audit trail' },
    h('datalist', { id: 'audit-actions' }, ['search', 'message.view', 'message.view_body', 'message.download_raw', 'export.create', 'export.download', 'auth.sign_in', 'user.create'].map((a) => h('option', { value: a }))),
    h('div', { class: 'row' }, h('label', {}, 'User', inputs.user), h('label', {}, 'Action', inputs.action), h('label', {}, 'Outcome', inputs.outcome), h('label', {}, 'Target', inputs.target), h('label', {}, 'From (ISO time)', inputs.from), h('label', {}, 'To (ISO time)', inputs.to), h('button', { class: 'primary', type: 'submit' }, 'Filter')),
  );
  const filterQs = () => {
    const u = new URLSearchParams();
    for (const k of fields) if (inputs[k].value) u.set(k, inputs[k].value);
    return u;
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go(`/audit?${filterQs()}`);
  });
  const verify = h('button', { type: 'button', id: 'verify-trail' }, 'Verify the whole trail');
  const verifyOut = h('span', { role: 'status' });
  verify.addEventListener('click', async () => {
    verifyOut.textContent = 'Verifying…';
    try {
      const r = await api('/api/audit/verify');
      verifyOut.className = r.ok ? 'ok' : 'error';
      verifyOut.textContent = r.ok ? ` ✔ Intact: ${r.records} records, ${r.seals ?? 0} seals` : ` ✖ Broken at record ${r.firstBad?.seq ?? '?'}: ${r.firstBad?.reason ?? ''}`;
    } catch (err) {
      verifyOut.textContent = err.message;
    }
  });
  const tbody = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'More');
  render(
    h('h1', {}, 'Audit trail'),
    form,
    h('p', { class: 'row' }, verify, verifyOut, h('a', { class: 'button', href: `/api/audit/export.csv?${filterQs()}`, download: 'audit.csv' }, 'Download as CSV')),
    h('table', { id: 'audit' }, h('thead', {}, h('tr', {}, ['Time', 'User', 'Action', 'Outcome', 'Target', 'Details'].map((x) => h('th', {}, x)))), tbody),
    more,
  );
  let cursor;
  const load = async () => {
    const u = filterQs();
    u.set('limit', '100');
    if (cursor) u.set('cursor', cursor);
    const r = await api(`/api/audit?${u}`);
    append(
      tbody,
      r.records.map((x) => h('tr', {}, h('td', { class: 'nowrap' }, fmtDate(x.time ?? x.at)), h('td', {}, x.user ?? ''), h('td', {}, x.action), h('td', { class: x.outcome === 'success' ? '' : 'error' }, x.outcome), h('td', { class: 'mono' }, x.target ?? ''), h('td', { class: 'mono' }, JSON.stringify(x.details ?? {})))),
    );
    cursor = r.nextCursor;
    more.hidden = !cursor;
  };
  more.addEventListener('click', () => load().catch((e) => toast(e.message)));
  await load();
}

// ---------- ingest statistics (Administration)

const SVG_NS = 'http://www.w3.org/2000/svg';
/** h() for SVG: attributes (presentation attributes, never inline style: the CSP forbids it) and children. */
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  return append(el, children);
}

const INGEST_INTERVALS = [
  { value: 'hour', label: 'Hourly', span: 'the last 48 hours' },
  { value: 'day', label: 'Daily', span: 'the last 30 days' },
  { value: 'month', label: 'Monthly', span: 'the last 12 months' },
];
const utcFormat = (opts) => new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', ...opts });
const FMT_DAY = utcFormat({ day: 'numeric', month: 'short' });
const FMT_MONTH = utcFormat({ month: 'short', year: 'numeric' });

/** A bucket as people read it, unambiguous (UTC): `2024-03-05 14:00 UTC`, `2024-03-05`, `2024-03`. */
function bucketName(iso, interval) {
  if (interval === 'hour') return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
  return interval === 'day' ? iso.slice(0, 10) : iso.slice(0, 7);
}
/** An axis tick: the hour (the date at midnight), the day, or the month. */
function tickName(iso, interval) {
  const d = new Date(iso);
  if (interval === 'hour') return d.getUTCHours() === 0 ? FMT_DAY.format(d) : iso.slice(11, 16);
  return interval === 'day' ? FMT_DAY.format(d) : FMT_MONTH.format(d);
}
const plural = (n, one, many) => `${n.toLocaleString('en')} ${n === 1 ? one : many}`;

/** A step of 1, 2 or 5 × 10^k, at least 1, so that about `parts` steps cover `max`. */
function niceStep(max, parts) {
  const raw = Math.max(1, max / parts);
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw);
}

/** Bars of messages per bucket as inline SVG, scaled by its viewBox; every bar has a <title>. */
function ingestChart(stats) {
  const W = 1000;
  const H = 250;
  const M = { left: 52, right: 28, top: 12, bottom: 44 };
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const n = stats.buckets.length;
  const max = Math.max(0, ...stats.buckets.map((b) => b.messages));
  const step = niceStep(max, 4);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const y = (v) => M.top + ph - (v / top) * ph;
  const slot = pw / n;
  const barW = Math.max(1, slot * (n > 100 ? 0.9 : 0.72));
  const unit = { hour: 'hour', day: 'day', month: 'month' }[stats.interval];
  const busiest = stats.buckets.reduce((a, b) => (b.messages > a.messages ? b : a), stats.buckets[0]);
  const label =
    `Bar chart: messages archived per ${unit} (UTC), ${bucketName(stats.buckets[0].start, stats.interval)} to ${bucketName(stats.buckets[n - 1].start, stats.interval)}. ` +
    `${plural(stats.total.messages, 'message', 'messages')} in all; the busiest ${unit} is ${bucketName(busiest.start, stats.interval)} with ${plural(busiest.messages, 'message', 'messages')}.`;
  const grid = [];
  for (let v = 0; v <= top; v += step) {
    grid.push(svg('line', { class: v === 0 ? 'axis' : 'grid', x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }), svg('text', { class: 'ytick', x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, v.toLocaleString('en')));
  }
  // At most ~12 date labels: hours on multiples of a nice number of hours; days and months counted back from the newest.
  const every = (interval) => (interval === 'hour' ? [1, 2, 3, 6, 12, 24] : interval === 'day' ? [1, 2, 3, 5, 7, 14, 30, 60, 90] : [1, 2, 3, 6, 12, 24, 60]).find((k) => n / k <= 12) ?? Math.ceil(n / 12);
  const k = every(stats.interval);
  const labelled = (b, i) => (stats.interval === 'hour' ? new Date(b.start).getUTCHours() % k === 0 : (n - 1 - i) % k === 0);
  const bars = stats.buckets.map((b, i) => {
    const x = M.left + i * slot;
    const title = `${bucketName(b.start, stats.interval)}: ${plural(b.messages, 'message', 'messages')}, ${fmtBytes(b.bytes)}`;
    return svg(
      'g',
      { class: 'bar', 'data-start': b.start, 'data-messages': b.messages, 'data-bytes': b.bytes },
      svg('title', {}, title),
      svg('rect', { class: 'hit', x, y: M.top, width: slot, height: ph }),
      b.messages > 0 ? svg('rect', { class: 'fill', x: x + (slot - barW) / 2, y: y(b.messages), width: barW, height: Math.max(1, y(0) - y(b.messages)) }) : null,
      labelled(b, i) ? [svg('line', { class: 'tick', x1: x + slot / 2, x2: x + slot / 2, y1: y(0), y2: y(0) + 4 }), svg('text', { class: 'xtick', x: x + slot / 2, y: y(0) + 17, 'text-anchor': 'middle' }, tickName(b.start, stats.interval))] : null,
    );
  });
  return svg(
    'svg',
    { id: 'ingest-chart', class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label },
    grid,
    bars,
    svg('text', { class: 'axis-title', x: M.left + pw / 2, y: H - 6, 'text-anchor': 'middle' }, `${unit[0].toUpperCase()}${unit.slice(1)} received (UTC)`),
    svg('text', { class: 'axis-title', x: 14, y: M.top + ph / 2, 'text-anchor': 'middle', transform: `rotate(-90 14 ${M.top + ph / 2})` }, 'Messages'),
  );
}

/** The "Ingest" card: an interval switch, totals, the chart (or why there is none) and its numbers as a table. */
async function drawIngest(card, wanted) {
  const interval = INGEST_INTERVALS.some((i) => i.value === wanted) ? wanted : 'day';
  const title = h('h2', { id: 'ingest-title' }, 'Ingest');
  const switcher = h(
    'div',
    { class: 'seg', role: 'group', 'aria-label': 'Interval' },
    INGEST_INTERVALS.map((i) =>
      h(
        'button',
        {
          type: 'button',
          'aria-pressed': String(i.value === interval),
          'data-interval': i.value,
          onclick: () => {
            const qs = new URLSearchParams(location.search);
            qs.set('interval', i.value);
            history.replaceState(null, '', `${location.pathname}?${qs}`);
            drawIngest(card, i.value).catch((e) => toast(e.message));
          },
        },
        i.label,
      ),
    ),
  );
  if (!card.firstChild) card.append(title, h('p', { class: 'muted' }, 'Loading…'));
  const stats = await api(`/api/admin/ingest-stats?interval=${interval}`);
  const span = INGEST_INTERVALS.find((i) => i.value === interval).span;
  const summary = h(
    'p',
    { id: 'ingest-summary' },
    h('strong', {}, `${plural(stats.total.messages, 'message', 'messages')}, ${fmtBytes(stats.total.bytes)}`),
    ` archived in ${span} · ${plural(stats.archive.messages, 'message', 'messages')} in the archive`,
    stats.queue ? [' · index queue: ', `${stats.queue.waiting + stats.queue.active + stats.queue.delayed} pending, `, h('span', { class: stats.queue.failed ? 'error' : '' }, `${stats.queue.failed} failed`)] : null,
  );
  const notes = [];
  if (stats.undated > 0) {
    notes.push(h('p', { class: 'banner', id: 'ingest-undated' }, `${plural(stats.undated, 'indexed message has', 'indexed messages have')} no receive time in the index (indexed by an older version) and ${stats.undated === 1 ? 'is' : 'are'} not counted here; `, h('code', {}, 'archive reindex'), ' adds them.'));
  }
  let body;
  if (stats.total.messages === 0) {
    body = h(
      'p',
      { class: 'empty', id: 'ingest-empty' },
      stats.archive.messages === 0 ? ['Nothing has been archived yet: point a journal rule at the SMTP endpoint, or run ', h('code', {}, 'archive import'), '.'] : `Nothing was archived in ${span}.`,
    );
  } else {
    const rows = stats.buckets.map((b) => h('tr', {}, h('td', { class: 'nowrap' }, bucketName(b.start, interval)), h('td', { class: 'num' }, b.messages.toLocaleString('en')), h('td', { class: 'num' }, fmtBytes(b.bytes))));
    body = [
      h('figure', { class: 'chart-box' }, ingestChart(stats)),
      h(
        'details',
        { id: 'ingest-data' },
        h('summary', {}, 'The numbers as a table'),
        h('table', { class: 'counts' }, h('caption', { class: 'caption muted' }, `Messages and bytes archived per ${interval} (UTC), by receive time`), h('thead', {}, h('tr', {}, h('th', {}, interval === 'hour' ? 'Hour' : interval === 'day' ? 'Day' : 'Month'), h('th', { class: 'num' }, 'Messages'), h('th', { class: 'num' }, 'Size'))), h('tbody', {}, rows)),
      ),
    ];
  }
  card.replaceChildren();
  append(card, [h('div', { class: 'row between' }, title, switcher), summary, notes, body]);
}

// ---------- administration

async function adminPage() {
  const health = h('section', { class: 'card', 'aria-label': 'Health' }, h('h2', {}, 'Health'), h('p', { class: 'muted' }, 'Loading…'));
  const users = h('section', { class: 'card', 'aria-label': 'Users' }, h('h2', {}, 'Users'));
  const tokens = h('section', { class: 'card', 'aria-label': 'API tokens' }, h('h2', {}, 'Your API tokens'));
  const ingest = offers('GET', '/api/admin/ingest-stats') ? h('section', { class: 'card', id: 'ingest', 'aria-labelledby': 'ingest-title' }) : null;
  render(h('h1', {}, 'Administration'), health, ingest, users, tokens);
  if (ingest) drawIngest(ingest, new URLSearchParams(location.search).get('interval')).catch((e) => ingest.replaceChildren(h('h2', {}, 'Ingest'), h('p', { class: 'error', role: 'alert' }, e.message)));

  const [hz, jobs] = await Promise.all([fetch('/healthz').then((r) => r.json()).catch((e) => ({ status: 'unreachable', detail: e.message })), api('/api/jobs').catch(() => null)]);
  const part = (name, x) => h('li', {}, h('strong', {}, `${name}: `), h('span', { class: x?.ok ? 'ok' : 'error' }, x?.ok ? 'ok' : 'DOWN'), ` (${x?.driver ?? '?'})`, x?.detail ? ` — ${x.detail}` : '');
  health.replaceChildren(
    h('h2', {}, `Health: ${hz.status}`),
    h('ul', { class: 'plain' }, part('Store', hz.store), part('Index', hz.index), part('Queue', hz.queue)),
    jobs ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Queue'), h('th', {}, 'Counts'))), h('tbody', {}, Object.entries(jobs.queues ?? {}).map(([q, c]) => h('tr', {}, h('td', {}, q), h('td', { class: 'mono' }, JSON.stringify(c)))))) : null,
  );

  const drawUsers = async () => {
    const { users: list } = await api('/api/users');
    const out = h('p', { role: 'status' });
    const form = h(
      'form',
      { class: 'row', 'aria-label': 'New user' },
      h('label', {}, 'E-mail', h('input', { name: 'email', type: 'email', required: true })),
      h('label', {}, 'Name', h('input', { name: 'name' })),
      h('fieldset', { class: 'row bare' }, h('legend', { class: 'muted' }, 'Roles'), ['officer', 'reviewer', 'auditor', 'admin'].map((r) => h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'roles', value: r }), r))),
      h('label', {}, 'Scope: addresses and domains (empty: all mail)', h('input', { name: 'scope', placeholder: 'alice@example.com, example.org' })),
      h('button', { type: 'submit', class: 'primary' }, 'Create user'),
    );
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      const items = String(f.get('scope') ?? '').split(/[,\s]+/).filter(Boolean);
      const scope = items.length ? { addresses: items.filter((x) => x.includes('@')), domains: items.filter((x) => !x.includes('@')) } : null;
      try {
        const r = await api('/api/users', { method: 'POST', body: { email: f.get('email'), name: f.get('name') || undefined, roles: f.getAll('roles'), scope } });
        out.replaceChildren('One-time password for ', r.user?.email ?? '', ' (shown once): ', h('span', { class: 'secret' }, r.password));
        await drawUsers().then(() => users.append(out));
      } catch (err) {
        out.className = 'error';
        out.textContent = err.message;
        users.append(out);
      }
    });
    users.replaceChildren(
      h('h2', {}, 'Users'),
      h('table', { id: 'users' }, h('thead', {}, h('tr', {}, ['E-mail', 'Name', 'Roles', 'Scope', 'State'].map((x) => h('th', {}, x)))), h('tbody', {}, list.map((u) => h('tr', {}, h('td', {}, u.email), h('td', {}, u.name ?? ''), h('td', {}, (u.roles ?? []).join(', ')), h('td', { class: 'mono' }, u.scope ? JSON.stringify(u.scope) : 'all mail'), h('td', {}, u.disabled ? 'disabled' : u.lock?.locked ? 'locked' : 'active'))))),
      h('h2', {}, 'New user'),
      form,
    );
  };
  const drawTokens = async () => {
    const { tokens: list } = await api('/api/tokens');
    const out = h('p', { role: 'status' });
    const create = h('button', { type: 'button' }, 'Create a token');
    create.addEventListener('click', async () => {
      const r = await api('/api/tokens', { method: 'POST', body: { name: 'web UI' } });
      await drawTokens();
      tokens.append(h('p', {}, 'New token (shown once): ', h('span', { class: 'secret' }, r.token)));
    });
    tokens.replaceChildren(
      h('h2', {}, 'Your API tokens'),
      h('table', {}, h('tbody', {}, list.map((t) => h('tr', {}, h('td', { class: 'mono' }, t.id), h('td', {}, t.name ?? ''), h('td', {}, t.expiresAt ? `expires ${fmtDate(t.expiresAt)}` : 'no expiry'), h('td', {}, t.revokedAt ? 'revoked' : h('button', { type: 'button', onclick: async () => { await api(`/api/tokens/${t.id}`, { method: 'DELETE' }); await drawTokens(); } }, 'Revoke')))))),
      create,
      out,
    );
  };
  await Promise.all([drawUsers(), drawTokens()]);
}

route();
