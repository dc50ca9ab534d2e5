// The Lattice console: a page served by the gateway that signs in like any other OAuth client (authorization code
// with PKCE, as the first-party public client `lattice-console`) and calls the same APIs as every other client, with
// the signed-in person's access token. The token lives in this page's memory only: a reload signs in again, which
// the gateway's session cookie makes a quick round trip. No refresh token is asked for.
'use strict';

const CLIENT_ID = 'lattice-console';
const SCOPES = [
  'lattice:compute:usage:read', 'lattice:compute:personal_runtime:manage', 'lattice:compute:inference',
  'lattice:compute:catalog:read', 'lattice:workspace:admin', 'lattice:admin', 'email', 'profile',
];
const WORKSPACE_ADMIN = 'lattice:workspace:admin';
const PENDING = 'lattice.console.signin';
const DAY = 86400;

const session = { token: null, claims: null, issuer: null, endpoints: null };
let stopView = () => {};

// ---- small helpers ----

const $ = (selector, root = document) => root.querySelector(selector);

/** An element: el('td', { class: 'num' }, 'text', child…). Text is always text, never HTML. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith('on')) {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, String(value));
  }
  node.append(...children);
  return node;
}

function b64url(bytes) {
  let text = '';
  for (const b of new Uint8Array(bytes)) {
    text += String.fromCharCode(b);
  }
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const randomString = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

function claimsOf(jwt) {
  const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  return JSON.parse(decodeURIComponent(escape(atob(part))));
}

const scopesOf = (claims) => (Array.isArray(claims.scope) ? claims.scope : String(claims.scope || '').split(' ')).filter(Boolean);
const isAdmin = () => scopesOf(session.claims).includes(WORKSPACE_ADMIN);
const workspaceId = () => session.claims.lattice_ws;

const dateTime = (unixSeconds) => (unixSeconds ? new Date(unixSeconds * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '');
const isoDateTime = (iso) => (iso ? iso.replace('T', ' ').slice(0, 19) + ' UTC' : '');
const day = (unixSeconds) => new Date(unixSeconds * 1000).toISOString().slice(0, 10);
const count = (n) => Number(n).toLocaleString('en-US');

// Costs arrive as decimal strings of US dollars; they are summed exactly, as integer pico-dollars.
const PICO = 10n ** 12n;
function picoOf(usd) {
  const text = String(usd ?? '0');
  const negative = text.startsWith('-');
  const [whole, fraction = ''] = text.replace('-', '').split('.');
  const value = BigInt(whole || '0') * PICO + BigInt((fraction + '000000000000').slice(0, 12));
  return negative ? -value : value;
}
function usd(pico) {
  // Rounded to a millionth of a dollar, which is finer than any price.
  const micro = (pico + (pico >= 0n ? 500000n : -500000n)) / 1000000n;
  const sign = micro < 0n ? '-' : '';
  const abs = micro < 0n ? -micro : micro;
  return `${sign}$${abs / 1000000n}.${String(abs % 1000000n).padStart(6, '0')}`;
}

// ---- signing in (authorization code + PKCE against the gateway's own authorization server) ----

async function discover() {
  const response = await fetch('/.well-known/openid-configuration');
  if (!response.ok) {
    throw new Error(`The gateway's sign-in is unavailable (${response.status}).`);
  }
  const configuration = await response.json();
  session.issuer = new URL(configuration.issuer);
  session.endpoints = { authorize: configuration.authorization_endpoint, token: configuration.token_endpoint };
}

const redirectUri = () => new URL('console/callback', session.issuer).href;

async function signIn(returnPath) {
  if (!crypto.subtle) {
    throw new Error('The console needs a secure page (https, or http on this machine) to sign in.');
  }
  const verifier = randomString(32);
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const state = randomString(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, returnPath }));
  const query = new URLSearchParams({
    response_type: 'code', client_id: CLIENT_ID, redirect_uri: redirectUri(), scope: SCOPES.join(' '),
    state, code_challenge: challenge, code_challenge_method: 'S256',
  });
  location.assign(`${session.endpoints.authorize}?${query}`);
  return new Promise(() => {}); // the page is leaving
}

/** Back from the authorization server: trades the code for an access token; returns where to go. */
async function completeSignIn() {
  const query = new URLSearchParams(location.search);
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  if (query.get('error')) {
    throw new Error(query.get('error') === 'access_denied' ? 'Sign-in was cancelled.' : `Sign-in failed: ${query.get('error_description') || query.get('error')}.`);
  }
  if (!pending || query.get('state') !== pending.state || !query.get('code')) {
    throw new Error('This sign-in link is stale. Sign in again.');
  }
  const response = await fetch(session.endpoints.token, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: query.get('code'), redirect_uri: redirectUri(),
      client_id: CLIENT_ID, code_verifier: pending.verifier,
    }),
  });
  const tokens = await response.json().catch(() => ({}));
  if (!response.ok || !tokens.access_token) {
    throw new Error(`Sign-in failed: ${tokens.error_description || tokens.error || response.status}.`);
  }
  accept(tokens.access_token);
  return pending.returnPath || '/console';
}

function accept(token) {
  session.token = token;
  session.claims = claimsOf(token);
  const who = $('#who');
  who.replaceChildren(
    el('span', {}, session.claims.email || session.claims.sub), ' · workspace ', el('code', {}, workspaceId()),
    isAdmin() ? ' (owner)' : ' (member)', ' · ',
    el('a', { href: `/account/login?returnUrl=${encodeURIComponent('/console')}` }, 'Switch account'));
  operatorSignedIn(); // console-operator.js: the operator's pages, for operators only
}

// ---- the API, as any client calls it ----

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  if (!session.token || session.claims.exp * 1000 < Date.now() + 30_000) {
    return signIn(location.pathname + location.search);
  }
  const headers = { authorization: `Bearer ${session.token}` };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
  }
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) {
    return signIn(location.pathname + location.search);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: reported below
  }
  if (!response.ok) {
    throw new ApiError(response.status, json?.error?.message || `${method} ${path} answered ${response.status}.`, json?.error?.code);
  }
  return json;
}

// ---- views ----

function page(title, ...children) {
  const main = $('#main');
  main.replaceChildren(el('h1', {}, title), ...children);
  document.title = `${title} · Lattice console`;
  return main;
}

function failure(error) {
  return el('p', { class: 'error', role: 'alert' }, error.message);
}

/** A read-only field with a Copy button: for secrets and commands shown once. */
function copyRow(id, label, value, multiline = false) {
  const field = multiline
    ? el('pre', { id, 'aria-label': label, tabindex: '0' }, value)
    : el('input', { id, type: 'text', readonly: true, value, 'aria-label': label, spellcheck: 'false', class: 'mono' });
  const done = el('span', { role: 'status', class: 'hint' });
  const button = el('button', {
    type: 'button', class: 'secondary', id: `${id}-copy`,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(value);
        done.textContent = 'Copied.';
      } catch {
        if (field.select) {
          field.select();
        }
        done.textContent = 'Select it and copy with Ctrl+C.';
      }
    },
  }, 'Copy');
  return el('div', { class: 'copyrow' }, field, button, done);
}

function table(caption, headers, rows, empty) {
  if (rows.length === 0) {
    return el('p', { class: 'hint' }, empty);
  }
  return el('table', {},
    el('caption', { class: 'visually-hidden' }, caption),
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', class: h.num ? 'num' : null }, h.label ?? h)))),
    el('tbody', {}, rows));
}

const badge = (text) => el('span', { class: `badge ${text}` }, text);

/** A one-field form (a name) that creates something; `create(name)` runs on submit, its failure shown under the form. */
function nameForm(id, button, create) {
  const name = el('input', { id: `${id}-name`, name: 'name', required: true, maxlength: 200, autocomplete: 'off' });
  const error = el('div', { role: 'alert' });
  const form = el('form', { class: 'inline', id },
    el('label', { for: `${id}-name` }, 'Name', name),
    el('button', { type: 'submit', id: `${id}-submit` }, button));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.replaceChildren();
    try {
      await create(name.value.trim());
      name.value = '';
    } catch (e) {
      error.replaceChildren(failure(e));
    }
  });
  return [form, error];
}

/** A Revoke button: asks first, posts to `path`, then redraws the list (or says what went wrong above it). */
function revokeButton(label, question, path, list, render) {
  return actionButton('Revoke', label, question, 'POST', path, list, render);
}

// Overview: today and this month, from GET /v1/usage (buckets of a day, grouped by status).
async function overview() {
  const status = el('p', { role: 'status' }, 'Loading…');
  page('Overview', el('p', { class: 'hint' }, isAdmin()
    ? 'Everything this workspace did, from every key and app. Days are UTC.'
    : 'What you did through the console. Days are UTC.'), status);
  const now = new Date();
  const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1) / 1000;
  const todayStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) / 1000;
  const usage = await api('GET', `/v1/usage?start_time=${monthStart}&bucket_width=1d&group_by=status&limit=31`);
  const totals = (from) => {
    const sum = { requests: 0, input: 0, output: 0, cost: 0n, errors: 0 };
    for (const bucket of usage.data.filter((b) => b.start_time >= from)) {
      for (const r of bucket.results) {
        sum.requests += r.num_model_requests;
        sum.input += r.input_tokens;
        sum.output += r.output_tokens;
        sum.cost += picoOf(r.cost_usd);
        if (r.status !== 'ok' && r.status !== 'cancelled') {
          sum.errors += r.num_model_requests;
        }
      }
    }
    return sum;
  };
  const card = (id, title, sum) => el('section', { class: 'card', id, 'aria-labelledby': `${id}-title` },
    el('h2', { id: `${id}-title` }, title),
    el('dl', {},
      el('dt', {}, 'Requests'), el('dd', { 'data-field': 'requests' }, count(sum.requests)),
      el('dt', {}, 'Tokens in'), el('dd', { 'data-field': 'input' }, count(sum.input)),
      el('dt', {}, 'Tokens out'), el('dd', { 'data-field': 'output' }, count(sum.output)),
      el('dt', {}, 'Cost'), el('dd', { 'data-field': 'cost' }, usd(sum.cost)),
      el('dt', {}, 'Errors'), el('dd', { 'data-field': 'errors' }, count(sum.errors))));
  status.replaceWith(el('div', { class: 'cards' },
    card('today', `Today (${day(todayStart)})`, totals(todayStart)),
    card('month', `This month (${day(monthStart).slice(0, 7)})`, totals(monthStart))));
}

// Keys: GET/POST /admin/v1/workspaces/{id}/keys, POST /admin/v1/keys/{id}/revoke, PUT /admin/v1/keys/{id}/limits
// (owners: lattice:workspace:admin).
async function keys() {
  if (!isAdmin()) {
    page('Keys', el('p', {}, 'Only the workspace\'s owners manage its keys. Ask an owner for a key, or sign in as one.'));
    return;
  }
  const list = el('div', {}, el('p', { role: 'status' }, 'Loading…'));
  const created = el('div', { 'aria-live': 'polite' });
  const [form, formError] = nameForm('create-key', 'Create key', async (name) => {
    const key = await api('POST', `/admin/v1/workspaces/${encodeURIComponent(workspaceId())}/keys`, { name });
    // The secret exists here and nowhere else: it is not kept, so leaving or reloading the page loses it.
    created.replaceChildren(el('section', { class: 'secret', id: 'new-key', 'aria-labelledby': 'new-key-title' },
      el('h2', { id: 'new-key-title' }, `Key “${key.name}” created`),
      el('p', {}, 'Copy it now: it is shown only once. Lattice keeps only a hash of it.'),
      copyRow('new-key-secret', 'The new key', key.key)));
    $('#new-key-secret').focus();
    await render();
  });
  page('Keys', el('p', { class: 'hint' }, 'Developer keys of this workspace: they call the API with the default developer scopes.'),
    form, formError, created, el('h2', {}, 'All keys'), list);

  async function render() {
    const answer = await api('GET', `/admin/v1/workspaces/${encodeURIComponent(workspaceId())}/keys`);
    const now = Date.now() / 1000;
    const rows = answer.data.slice().reverse().map((k) => {
      const state = k.revoked_at ? 'revoked' : k.expires_at && k.expires_at <= now ? 'expired' : 'active';
      const revoke = state === 'active'
        ? revokeButton(`Revoke key ${k.name}`, `Revoke the key “${k.name}”? Requests with it fail from now on.`,
          `/admin/v1/keys/${encodeURIComponent(k.id)}/revoke`, list, render)
        : '';
      return el('tr', { 'data-key': k.id },
        el('td', {}, k.name), el('td', {}, el('code', {}, `${k.prefix}…`)), el('td', {}, el('code', {}, k.id)),
        el('td', {}, k.scopes.join(' ')), el('td', {}, dateTime(k.created_at)), el('td', {}, badge(state)),
        el('td', {}, limitsEditor('key', k.id, k.name, k.limits)), el('td', {}, revoke));
    });
    list.replaceChildren(table('Keys', ['Name', 'Key', 'Id', 'Scopes', 'Created', 'Status', 'Limits', ''], rows, 'No keys yet.'));
  }
  await render();
}

// Personal runtimes: GET/POST /v1/personal-runtimes, POST /v1/personal-runtimes/{id}/revoke; the status is live.
async function runtimes() {
  const list = el('div', {}, el('p', { role: 'status' }, 'Loading…'));
  const pairing = el('div', { 'aria-live': 'polite' });
  const [form, formError] = nameForm('create-runtime', 'Add a runtime', async (name) => {
    const created = await api('POST', '/v1/personal-runtimes', { displayName: name, executionBackend: 'local-model' });
    const gateway = session.issuer.href.replace(/\/$/, '');
    const command = `lattice relay connect --gateway ${gateway} --token ${created.bootstrapToken}`;
    pairing.replaceChildren(el('section', { class: 'secret', id: 'pairing', 'aria-labelledby': 'pairing-title' },
      el('h2', { id: 'pairing-title' }, `Pair “${created.runtime.displayName}”`),
      el('p', {}, `Run this on the machine that will serve models, before ${isoDateTime(created.bootstrapExpiresAt)}. The token works once and is shown only here.`),
      copyRow('pair-command', 'Pairing command', command, true)));
    await render();
  });
  page('Personal runtimes', el('p', { class: 'hint' }, 'Machines of yours that serve models to this workspace. The status refreshes every few seconds.'),
    form, formError, pairing, el('h2', {}, 'Runtimes'), list);

  async function render() {
    const answer = await api('GET', '/v1/personal-runtimes');
    const rows = answer.runtimes.slice().reverse().map((r) => el('tr', { 'data-runtime': r.latticeId },
      el('td', {}, r.displayName), el('td', {}, el('code', {}, r.modelId)), el('td', { 'data-field': 'status' }, badge(r.status)),
      el('td', {}, isoDateTime(r.lastSeenAt)),
      el('td', {}, (r.capabilities || []).map((c) => `${c.task}: ${c.model}`).join(', ')),
      el('td', {}, r.status === 'revoked' ? '' : revokeButton(`Revoke runtime ${r.displayName}`,
        `Revoke “${r.displayName}”? Its link is cut and it cannot pair again.`,
        `/v1/personal-runtimes/${encodeURIComponent(r.latticeId)}/revoke`, list, render))));
    list.replaceChildren(table('Personal runtimes', ['Name', 'Model id', 'Status', 'Last seen', 'Serves', ''], rows, 'No personal runtimes yet.'));
  }
  await render();
  const timer = setInterval(() => render().catch(() => {}), 5000);
  stopView = () => clearInterval(timer);
}

// Usage: a bar chart per day (GET /v1/usage) and the per-request log (GET /v1/usage/requests) with filters.
async function usage() {
  const params = new URLSearchParams(location.search);
  const field = (id, label, value) => el('label', { for: id }, label, el('input', { id, name: id, value: value || '', autocomplete: 'off' }));
  const form = el('form', { class: 'inline', id: 'usage-filters' },
    field('model', 'Model', params.get('model')),
    field('key_id', 'Key id', params.get('key_id')),
    field('status', 'Status (ok, cancelled or an error code)', params.get('status')),
    field('surface', 'Surface', params.get('surface')),
    el('button', { type: 'submit' }, 'Apply'),
    el('button', { type: 'button', class: 'secondary', id: 'usage-refresh', onclick: () => usage().catch(show) }, 'Refresh'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (String(v).trim()) {
        query.set(k, String(v).trim());
      }
    }
    navigate(`/console/usage${query.size ? `?${query}` : ''}`);
  });
  const loading = (id) => el('div', { class: 'chart', id }, el('p', { role: 'status' }, 'Loading…'));
  const chart = loading('usage-chart');
  const byModel = loading('usage-by-model');
  const byKey = loading('usage-by-key');
  const log = el('div', { id: 'usage-log' }, el('p', { role: 'status' }, 'Loading…'));
  page('Usage', el('p', { class: 'hint' }, isAdmin()
    ? 'Every request made in this workspace, newest first. Days are UTC.'
    : 'The requests you made through the console, newest first. Days are UTC.'),
  el('h2', { id: 'chart-title' }, 'Requests per day, last 30 days'), chart,
  el('div', { class: 'charts' },
    el('section', {}, el('h2', { id: 'by-model-title' }, 'Requests per model, last 30 days'), byModel),
    el('section', {}, el('h2', { id: 'by-key-title' }, 'Requests per key or app, last 30 days'), byKey)),
  el('h2', {}, 'Requests'), form, log);

  const today = Math.floor(Date.now() / 1000 / DAY) * DAY;
  const start = today - 29 * DAY;
  // One query feeds the three charts: per day, model and key (or, for access tokens, app).
  const [buckets, requests, keyNames] = await Promise.all([
    api('GET', `/v1/usage?start_time=${start}&bucket_width=1d&limit=30&group_by=model,key_id,app_id`),
    api('GET', `/v1/usage/requests?limit=50${[...params].map(([k, v]) => `&${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('')}`),
    namesOfKeys(),
  ]);
  const perModel = new Map();
  const perKey = new Map();
  const add = (map, id, label, r) => {
    const total = map.get(id) || map.set(id, { id, label, requests: 0, tokens: 0, cost: 0n }).get(id);
    total.requests += r.num_model_requests;
    total.tokens += r.input_tokens + r.output_tokens;
    total.cost += picoOf(r.cost_usd);
  };
  const days = buckets.data.map((b) => {
    for (const r of b.results) {
      add(perModel, r.model, r.model, r);
      if (r.key_id) {
        add(perKey, r.key_id, keyNames.get(r.key_id) || r.key_id, r);
      } else {
        add(perKey, `app:${r.app_id}`, `app ${r.app_id}`, r);
      }
    }
    return {
      day: day(b.start_time),
      requests: b.results.reduce((n, r) => n + r.num_model_requests, 0),
      cost: b.results.reduce((n, r) => n + picoOf(r.cost_usd), 0n),
    };
  });
  chart.replaceChildren(barChart(days));
  byModel.replaceChildren(rankChart('by-model-title', 'Model', [...perModel.values()]));
  byKey.replaceChildren(rankChart('by-key-title', 'Key or app', [...perKey.values()]));
  renderLog(log, requests, params);
}

/** Owners see their keys' names in the charts; anyone else (or if the list fails) their ids. */
async function namesOfKeys() {
  if (!isAdmin()) {
    return new Map();
  }
  try {
    const answer = await api('GET', `/admin/v1/workspaces/${encodeURIComponent(workspaceId())}/keys`);
    return new Map(answer.data.map((k) => [k.id, k.name]));
  } catch {
    return new Map();
  }
}

function renderLog(log, answer, params) {
  const row = (r) => el('tr', { 'data-request': r.request_id },
    el('td', {}, dateTime(r.created_at)), el('td', {}, el('code', {}, r.request_id)), el('td', {}, r.model), el('td', {}, r.surface),
    el('td', {}, r.key_id ? el('code', {}, r.key_id) : r.app_id ? `app ${r.app_id}` : ''),
    el('td', {}, badge(r.status === 'ok' || r.status === 'cancelled' ? r.status : 'error'), ' ', r.status === 'ok' ? '' : r.status),
    el('td', { class: 'num' }, count(r.usage.prompt_tokens)), el('td', { class: 'num' }, count(r.usage.completion_tokens)),
    el('td', { class: 'num' }, usd(picoOf(r.cost_usd))), el('td', { class: 'num' }, `${r.duration_ms} ms`));
  const headers = ['Time', 'Request', 'Model', 'Surface', 'Key or app', 'Status',
    { label: 'Tokens in', num: true }, { label: 'Tokens out', num: true }, { label: 'Cost', num: true }, { label: 'Duration', num: true }];
  const rows = answer.data.map(row);
  log.replaceChildren(table('Requests', headers, rows, 'No requests match.'));
  if (answer.has_more) {
    const more = el('button', {
      type: 'button', class: 'secondary', id: 'usage-more',
      onclick: async () => {
        more.disabled = true;
        const query = new URLSearchParams(params);
        query.set('limit', '50');
        query.set('after', answer.data[answer.data.length - 1].request_id);
        const next = await api('GET', `/v1/usage/requests?${query}`);
        $('tbody', log).append(...next.data.map(row));
        answer = next;
        if (next.has_more) {
          more.disabled = false;
        } else {
          more.remove();
        }
      },
    }, 'Load more');
    log.append(more);
  }
}

/** Requests per day as an SVG bar chart, with the numbers in a table for screen readers and keyboard users. */
function barChart(days) {
  const width = 720;
  const height = 200;
  const left = 36;
  const right = 20;
  const bottom = 22;
  const max = Math.max(1, ...days.map((d) => d.requests));
  const slot = (width - left - right) / Math.max(1, days.length);
  const bars = days.map((d, i) => {
    const h = Math.round((d.requests / max) * (height - bottom - 10));
    return svg('rect', { class: 'bar', x: left + i * slot + 2, y: height - bottom - h, width: Math.max(1, slot - 4), height: h },
      svg('title', {}, `${d.day}: ${count(d.requests)} requests, ${usd(d.cost)}`));
  });
  const labels = days.map((d, i) => (i % 5 === 0 || i === days.length - 1
    ? svg('text', { x: left + i * slot + slot / 2, y: height - 6, 'text-anchor': 'middle' }, d.day.slice(5))
    : null)).filter(Boolean);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': 'chart-title', focusable: 'false' },
    svg('line', { class: 'axis', x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }),
    svg('text', { x: left - 4, y: 14, 'text-anchor': 'end' }, String(max)),
    svg('text', { x: left - 4, y: height - bottom, 'text-anchor': 'end' }, '0'),
    ...bars, ...labels);
  const numbers = el('details', {}, el('summary', {}, 'The numbers'),
    table('Requests per day', ['Day', { label: 'Requests', num: true }, { label: 'Cost', num: true }],
      days.map((d) => el('tr', {}, el('td', {}, d.day), el('td', { class: 'num' }, count(d.requests)), el('td', { class: 'num' }, usd(d.cost)))), ''));
  return el('div', {}, chart, numbers);
}

/**
 * Totals per model or key as horizontal SVG bars, most requests first; each bar's tooltip gives its requests, tokens
 * and cost, and "The numbers" the same figures as a table.
 */
function rankChart(titleId, what, totals) {
  if (totals.length === 0) {
    return el('p', { class: 'hint' }, 'No requests in these 30 days.');
  }
  const items = totals.slice().sort((a, b) => b.requests - a.requests || (a.label < b.label ? -1 : 1));
  const width = 560;
  const labelWidth = 200;
  const valueWidth = 64;
  const rowHeight = 26;
  const max = Math.max(1, ...items.map((i) => i.requests));
  const short = (text) => (text.length > 28 ? `${text.slice(0, 27)}…` : text);
  const rows = items.map((item, i) => {
    const y = i * rowHeight;
    const w = Math.max(1, Math.round((item.requests / max) * (width - labelWidth - valueWidth)));
    return svg('g', { 'data-label': item.label, 'data-id': item.id },
      svg('text', { class: 'label', x: labelWidth - 8, y: y + 17, 'text-anchor': 'end' }, short(item.label)),
      svg('rect', { class: 'bar', x: labelWidth, y: y + 5, width: w, height: rowHeight - 10 },
        svg('title', {}, `${item.label}: ${count(item.requests)} requests, ${count(item.tokens)} tokens, ${usd(item.cost)}`)),
      svg('text', { class: 'value', x: labelWidth + w + 6, y: y + 17 }, count(item.requests)));
  });
  const chart = svg('svg', { viewBox: `0 0 ${width} ${items.length * rowHeight + 4}`, role: 'img', 'aria-labelledby': titleId, focusable: 'false' }, ...rows);
  const numbers = el('details', {}, el('summary', {}, 'The numbers'),
    table(`Requests per ${what.toLowerCase()}`, [what, 'Id', { label: 'Requests', num: true }, { label: 'Tokens', num: true }, { label: 'Cost', num: true }],
      items.map((i) => el('tr', {}, el('td', {}, i.label), el('td', {}, el('code', {}, i.id)), el('td', { class: 'num' }, count(i.requests)),
        el('td', { class: 'num' }, count(i.tokens)), el('td', { class: 'num' }, usd(i.cost)))), ''));
  return el('div', {}, chart, numbers);
}

// ---- routing ----

const VIEWS = {
  '/console': overview, '/console/keys': keys, '/console/runtimes': runtimes, '/console/usage': usage,
  '/console/catalog': catalog, '/console/task-classes': taskClasses, // console-operator.js
  // console-workspace.js
  '/console/apps': workspaceApps, '/console/members': workspaceMembers, '/console/limits': workspaceLimits, '/console/invoices': workspaceInvoices,
};

function show(error) {
  page('Something went wrong', failure(error), el('p', {}, el('a', { href: '/console' }, 'Back to the overview')));
}

async function route() {
  stopView();
  stopView = () => {};
  const path = location.pathname.replace(/\/$/, '') || '/console';
  const view = VIEWS[path];
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    if (link.getAttribute('href') === path) {
      link.setAttribute('aria-current', 'page');
    } else {
      link.removeAttribute('aria-current');
    }
  }
  if (!view) {
    page('Not found', el('p', {}, 'The console has no such page. '), el('a', { href: '/console' }, 'Overview'));
    return;
  }
  try {
    await view();
  } catch (error) {
    show(error);
  }
  $('#main').focus({ preventScroll: true });
}

function navigate(path) {
  history.pushState(null, '', path);
  route();
}

document.addEventListener('click', (event) => {
  const link = event.target.closest && event.target.closest('a[href^="/console"]');
  if (link && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
    event.preventDefault();
    navigate(link.getAttribute('href'));
  }
});
window.addEventListener('popstate', route);

async function start() {
  try {
    await discover();
    // Tokens and the session cookie belong to the gateway's public address: a page opened under another name for
    // the same server moves there first.
    if (location.origin !== session.issuer.origin) {
      location.replace(new URL(location.pathname.slice(1) + location.search, session.issuer).href);
      return;
    }
    if (location.pathname === '/console/callback') {
      const back = await completeSignIn();
      history.replaceState(null, '', back);
    } else {
      await signIn(location.pathname + location.search);
      return;
    }
    await route();
  } catch (error) {
    page('Sign-in', failure(error), el('button', { type: 'button', onclick: () => signIn('/console') }, 'Sign in again'));
  }
}

start();
