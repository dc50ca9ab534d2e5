// The console's workspace pages: OAuth apps and grants, members and invitations, limits and budgets, invoices, and the
// limits editor of the Keys page. Loaded before console.js, whose helpers (el, page, table, api, copyRow, badge, usd…)
// these functions use when they run. They call the admin API (/admin/v1, with the owner's lattice:workspace:admin)
// and /v1/invoices, as every other client does; the gateway serves the console nothing of its own.
'use strict';

/** The scopes an app may be registered for (the gateway refuses lattice:workspace:admin and lattice:admin). */
const WS_APP_SCOPES = [
  'lattice:compute:inference', 'lattice:compute:streaming', 'lattice:compute:catalog:read', 'lattice:compute:usage:read',
  'lattice:compute:personal_runtime:manage', 'lattice:compute:workspace_only', 'lattice:compute:marketplace',
  'openid', 'profile', 'email', 'offline_access',
];
/** The built-in clients: owned by the operator's workspace, never deleted. */
const WS_BUILT_IN_APPS = { 'lattice-console': 'Lattice console', 'lattice-cli': 'Lattice CLI' };
const WS_LIMITS = [
  ['requests_per_minute', 'Requests per minute', 'requests/min'],
  ['tokens_per_minute', 'Tokens per minute', 'tokens/min'],
  ['max_concurrent', 'Requests at once', 'at once'],
];
const WS_BUDGET_SCOPES = [
  ['workspace', 'The whole workspace'], ['key', 'A key'], ['app', 'An app (all its users)'], ['app_user', 'Each user of an app'],
];

const wsPath = (rest) => `/admin/v1/workspaces/${encodeURIComponent(workspaceId())}${rest}`;
const wsLoading = () => el('p', { role: 'status' }, 'Loading…');

/** USD from a decimal string, to the millionth, without trailing zeros past the cents: $5.00, $0.000003. */
const wsMoney = (amount) => usd(picoOf(amount)).replace(/(\.\d\d\d*?)0+$/, '$1');

/** False, after saying so, when the signed-in person is not an owner. */
function wsOwnersOnly(title, what) {
  if (isAdmin()) {
    return true;
  }
  page(title, el('p', {}, `Only the workspace's owners manage ${what}. Sign in as an owner to see them.`));
  return false;
}

const wsInput = (id, label, attributes = {}) =>
  el('label', { for: id }, label, el('input', { id, name: id, autocomplete: 'off', ...attributes }));
const wsSelect = (id, label, options) =>
  el('label', { for: id }, label, el('select', { id, name: id }, options.map(([value, text]) => el('option', { value }, text))));
const wsCheckbox = (id, label, checked = false) =>
  el('label', { for: id, class: 'check' }, el('input', { id, name: id, type: 'checkbox', checked }), label);

/** A form of labelled fields; `submit(form)` runs on submit, its failure shown under the form. */
function wsForm(id, fields, button, submit, reset = true) {
  const error = el('div', { role: 'alert' });
  const submitButton = el('button', { type: 'submit', id: `${id}-submit` }, button);
  const form = el('form', { class: 'inline', id }, fields, submitButton);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.replaceChildren();
    submitButton.disabled = true;
    try {
      await submit(form);
      if (reset) {
        form.reset();
      }
    } catch (e) {
      error.replaceChildren(failure(e));
    } finally {
      submitButton.disabled = false;
    }
  });
  return [form, error];
}

/** A button that asks first, then calls `method path` and redraws the list (or says what went wrong above it). console.js's Revoke buttons are these. */
function actionButton(text, label, question, method, path, list, render) {
  return el('button', {
    type: 'button', class: 'danger', 'aria-label': label,
    onclick: async (event) => {
      if (!confirm(question)) {
        return;
      }
      event.target.disabled = true;
      try {
        await api(method, path);
        await render();
      } catch (error) {
        event.target.disabled = false;
        list.prepend(failure(error));
      }
    },
  }, text);
}

/** A section shown once, for a secret or link the page keeps nowhere. */
function wsShownOnce(id, title, ...children) {
  return el('section', { class: 'secret', id, 'aria-labelledby': `${id}-title` }, el('h2', { id: `${id}-title` }, title), ...children);
}

// ---- limits (workspaces, keys, apps): GET/PUT …/limits ----

function describeLimits(limits) {
  const parts = WS_LIMITS.filter(([field]) => limits?.[field] != null).map(([field, , unit]) => `${count(limits[field])} ${unit}`);
  return parts.length ? parts.join(', ') : 'No limits';
}

/** The three limits (blank: none), saved with PUT `path`; `saved(limits)` runs with what the gateway kept. */
function wsLimitsForm(id, path, current, saved) {
  const fields = WS_LIMITS.map(([field, label]) =>
    wsInput(`${id}-${field}`, label, { type: 'number', min: 1, step: 1, inputmode: 'numeric', value: current?.[field] ?? '' }));
  return wsForm(id, fields, 'Save limits', async (form) => {
    const body = {};
    for (const [field] of WS_LIMITS) {
      const text = form.elements[`${id}-${field}`].value.trim();
      body[field] = text === '' ? null : Number(text);
    }
    const answer = await api('PUT', path, body);
    saved(answer.limits);
  }, false);
}

/** A key's or app's limits in a table cell: what they are, and a disclosure with the form to change them. */
function limitsEditor(kind, id, name, current) {
  const shown = el('span', { 'data-field': 'limits' }, describeLimits(current));
  const details = el('details', { class: 'limits' });
  const [form, error] = wsLimitsForm(`${kind}-${id}-limits`, `/admin/v1/${kind}s/${encodeURIComponent(id)}/limits`, current, (limits) => {
    shown.textContent = describeLimits(limits);
    details.open = false;
  });
  details.append(el('summary', {}, shown, el('span', { class: 'visually-hidden' }, ` — change the limits of ${name}`)), form, error);
  return details;
}

// ---- OAuth apps and grants ----

// GET/POST /admin/v1/workspaces/{id}/apps, DELETE /admin/v1/apps/{client_id}, PUT /admin/v1/apps/{client_id}/limits,
// GET /admin/v1/workspaces/{id}/grants, POST /admin/v1/grants/{id}/revoke (and the members, to name who granted).
async function workspaceApps() {
  if (!wsOwnersOnly('OAuth apps', 'its OAuth apps and grants')) {
    return;
  }
  const list = el('div', { id: 'apps-list' }, wsLoading());
  const grantList = el('div', { id: 'grants-list' }, wsLoading());
  const created = el('div', { 'aria-live': 'polite' });
  const scopes = el('fieldset', { class: 'choices' }, el('legend', {}, 'Scopes'),
    WS_APP_SCOPES.map((s, i) => wsCheckbox(`app-scope-${i}`, s, s === 'lattice:compute:inference')));
  const [form, formError] = wsForm('create-app', [
    wsInput('app-name', 'Name', { required: true, maxlength: 200 }),
    el('label', { for: 'app-redirects' }, 'Redirect URIs (one a line)',
      el('textarea', { id: 'app-redirects', name: 'app-redirects', rows: 2, cols: 48, spellcheck: 'false' })),
    scopes,
    el('fieldset', { class: 'choices' }, el('legend', {}, 'Kind'),
      wsCheckbox('app-confidential', 'Confidential (a server that keeps a client secret)'),
      wsCheckbox('app-device', 'Device flow (for apps without a browser)')),
  ], 'Register app', async (f) => {
    const app = await api('POST', wsPath('/apps'), {
      name: f.elements['app-name'].value.trim(),
      redirect_uris: f.elements['app-redirects'].value.split(/\s+/).filter(Boolean),
      scopes: WS_APP_SCOPES.filter((s, i) => f.elements[`app-scope-${i}`].checked),
      confidential: f.elements['app-confidential'].checked,
      device_flow: f.elements['app-device'].checked,
    });
    created.replaceChildren(wsShownOnce('new-app', `App “${app.name}” registered`,
      el('p', {}, 'Its client id:'), copyRow('new-app-client-id', 'Client id', app.client_id),
      app.client_secret
        ? [el('p', {}, 'Its client secret: copy it now, it is shown only once. Lattice keeps only a hash of it.'),
          copyRow('new-app-secret', 'Client secret', app.client_secret)]
        : null));
    await render();
  });
  page('OAuth apps', el('p', { class: 'hint' }, 'Apps that offer “Sign in with Lattice” for this workspace, and the grants people made to apps.'),
    form, formError, created, el('h2', {}, 'Apps'), list, el('h2', {}, 'Grants'),
    el('p', { class: 'hint' }, 'Who allowed which app to act for them. Revoking a grant stops its tokens at their next request.'), grantList);

  async function render() {
    const [apps, grants, members] = await Promise.all([api('GET', wsPath('/apps')), api('GET', wsPath('/grants')), api('GET', wsPath('/members'))]);
    // Each app's limits come from its own route.
    const limits = await Promise.all(apps.data.map((a) => api('GET', `/admin/v1/apps/${encodeURIComponent(a.client_id)}/limits`)));
    const appName = (id) => WS_BUILT_IN_APPS[id] || apps.data.find((a) => a.client_id === id)?.name || id;
    const who = (id) => members.data.find((m) => m.user_id === id)?.email || id;
    const appRows = apps.data.map((a, i) => el('tr', { 'data-app': a.client_id },
      el('td', {}, a.name), el('td', {}, el('code', {}, a.client_id)), el('td', {}, a.confidential ? 'confidential' : 'public'),
      el('td', {}, [a.redirect_uris.length ? 'code + PKCE' : null, a.device_flow ? 'device' : null].filter(Boolean).join(', ')),
      el('td', {}, a.redirect_uris.map((u) => el('div', {}, el('code', {}, u)))),
      el('td', {}, a.scopes.join(' ')), el('td', {}, dateTime(a.created_at)),
      el('td', {}, limitsEditor('app', a.client_id, a.name, limits[i].limits)),
      el('td', {}, WS_BUILT_IN_APPS[a.client_id] ? 'built in' : actionButton('Delete', `Delete app ${a.name}`,
        `Delete the app “${a.name}”? Every grant made to it is revoked at once.`, 'DELETE',
        `/admin/v1/apps/${encodeURIComponent(a.client_id)}`, list, render))));
    list.replaceChildren(table('OAuth apps', ['Name', 'Client id', 'Type', 'Flows', 'Redirect URIs', 'Scopes', 'Created', 'Limits per user', ''],
      appRows.reverse(), 'No apps yet.'));

    const grantRows = grants.data.slice().reverse().map((g) => {
      const mine = g.user_id === session.claims.sub && g.client_id === CLIENT_ID;
      return el('tr', { 'data-grant': g.id },
        el('td', {}, who(g.user_id), mine ? ' (this console)' : ''), el('td', {}, appName(g.client_id)),
        el('td', {}, g.scopes.join(' ')), el('td', {}, dateTime(g.created_at)), el('td', {}, badge(g.revoked_at ? 'revoked' : 'active')),
        el('td', {}, g.revoked_at ? '' : revokeButton(`Revoke grant of ${appName(g.client_id)} for ${who(g.user_id)}`,
          `Revoke what ${who(g.user_id)} allowed “${appName(g.client_id)}” to do? Its tokens stop working.`,
          `/admin/v1/grants/${encodeURIComponent(g.id)}/revoke`, grantList, render)));
    });
    grantList.replaceChildren(table('Grants', ['Person', 'App', 'Scopes', 'Granted', 'Status', ''], grantRows, 'No grants yet.'));
  }
  await render();
}

// ---- members and invitations ----

// GET /admin/v1/workspaces/{id}/members, DELETE …/members/{user_id}, GET/POST …/invitations,
// POST /admin/v1/invitations/{id}/revoke.
async function workspaceMembers() {
  if (!wsOwnersOnly('Members', 'its members')) {
    return;
  }
  const list = el('div', { id: 'members-list' }, wsLoading());
  const invitationList = el('div', { id: 'invitations-list' }, wsLoading());
  const created = el('div', { 'aria-live': 'polite' });
  const [form, formError] = wsForm('invite', [
    wsInput('invite-email', 'E-mail', { type: 'email', required: true, maxlength: 320 }),
    wsSelect('invite-role', 'Role', [['member', 'member'], ['owner', 'owner']]),
  ], 'Invite', async (f) => {
    const invitation = await api('POST', wsPath('/invitations'), { email: f.elements['invite-email'].value.trim(), role: f.elements['invite-role'].value });
    // The link exists here and nowhere else: the gateway keeps only a hash of its token.
    created.replaceChildren(wsShownOnce('new-invitation', `Invitation for ${invitation.email}`,
      el('p', {}, `Send this link to them: it works once, until ${dateTime(invitation.expires_at)}, and is shown only here.`),
      copyRow('invitation-link', 'Invitation link', invitation.accept_url)));
    await render();
  });
  page('Members', el('p', { class: 'hint' }, 'People in this workspace. Invite someone by e-mail: they open the link, sign in or create their account with that address, and join.'),
    form, formError, created, el('h2', {}, 'Members'), list, el('h2', {}, 'Invitations'), invitationList);

  async function render() {
    const [members, invitations] = await Promise.all([api('GET', wsPath('/members')), api('GET', wsPath('/invitations'))]);
    const memberRows = members.data.map((m) => {
      const me = m.user_id === session.claims.sub;
      return el('tr', { 'data-member': m.user_id },
        el('td', {}, m.email, me ? ' (you)' : ''), el('td', {}, m.role), el('td', {}, dateTime(m.created_at)),
        el('td', {}, me ? '' : actionButton('Remove', `Remove member ${m.email}`,
          `Remove ${m.email} from the workspace? Their grants and personal runtimes here are revoked at once.`, 'DELETE',
          wsPath(`/members/${encodeURIComponent(m.user_id)}`), list, render)));
    });
    list.replaceChildren(table('Members', ['E-mail', 'Role', 'Member since', ''], memberRows, 'No members.'));

    const now = Date.now() / 1000;
    const invitationRows = invitations.data.slice().reverse().map((i) => {
      const state = i.revoked_at ? 'revoked' : i.accepted_at ? 'accepted' : i.expires_at <= now ? 'expired' : 'pending';
      return el('tr', { 'data-invitation': i.id },
        el('td', {}, i.email), el('td', {}, i.role), el('td', {}, dateTime(i.created_at)), el('td', {}, dateTime(i.expires_at)),
        el('td', { 'data-field': 'status' }, badge(state)),
        el('td', {}, state === 'pending' ? revokeButton(`Revoke invitation for ${i.email}`,
          `Withdraw the invitation for ${i.email}? Its link stops working.`,
          `/admin/v1/invitations/${encodeURIComponent(i.id)}/revoke`, invitationList, render) : ''));
    });
    invitationList.replaceChildren(table('Invitations', ['E-mail', 'Role', 'Sent', 'Expires', 'Status', ''], invitationRows, 'No invitations yet.'));
  }
  await render();
}

// ---- limits and budgets ----

// GET/PUT /admin/v1/workspaces/{id}/limits; GET/POST …/budgets, PATCH/DELETE /admin/v1/budgets/{id} (and the keys and
// apps, to name what a budget applies to).
async function workspaceLimits() {
  if (!wsOwnersOnly('Limits and budgets', 'its limits and budgets')) {
    return;
  }
  const [limits, keyList, apps] = await Promise.all([api('GET', wsPath('/limits')), api('GET', wsPath('/keys')), api('GET', wsPath('/apps'))]);
  const current = el('p', { id: 'workspace-limits', 'data-field': 'limits' }, describeLimits(limits.limits));
  const [limitsForm, limitsError] = wsLimitsForm('workspace-limits-form', wsPath('/limits'), limits.limits, (saved) => {
    current.textContent = describeLimits(saved);
  });

  const keyName = (id) => keyList.data.find((k) => k.id === id)?.name;
  const appName = (id) => WS_BUILT_IN_APPS[id] || apps.data.find((a) => a.client_id === id)?.name;
  const subjects = {
    workspace: [[workspaceId(), 'This workspace']],
    key: keyList.data.filter((k) => !k.revoked_at).map((k) => [k.id, `${k.name} (${k.id})`]),
    app: apps.data.map((a) => [a.client_id, `${a.name} (${a.client_id})`]),
  };
  subjects.app_user = subjects.app;
  const scope = wsSelect('budget-scope', 'Applies to', WS_BUDGET_SCOPES);
  const subject = el('label', { for: 'budget-subject' }, 'Key or app', el('select', { id: 'budget-subject', name: 'budget-subject' }));
  const fillSubjects = () => {
    const chosen = $('select', scope).value;
    const select = $('select', subject);
    select.replaceChildren(...subjects[chosen].map(([value, text]) => el('option', { value }, text)));
    select.disabled = chosen === 'workspace';
  };
  $('select', scope).addEventListener('change', fillSubjects);
  fillSubjects();
  const budgetList = el('div', { id: 'budgets-list' }, wsLoading());
  const created = el('div', { 'aria-live': 'polite' });
  const [budgetForm, budgetError] = wsForm('create-budget', [
    scope, subject,
    wsInput('budget-amount', 'Amount (USD a month)', { required: true, inputmode: 'decimal', pattern: '\\d+(\\.\\d{1,12})?', size: 12 }),
    wsInput('budget-alert', 'Alert URL (optional)', { type: 'url', size: 32 }),
  ], 'Set budget', async (f) => {
    const body = { scope: f.elements['budget-scope'].value, amount_usd: f.elements['budget-amount'].value.trim() };
    if (body.scope !== 'workspace') {
      body.subject_id = f.elements['budget-subject'].value;
    }
    if (f.elements['budget-alert'].value.trim()) {
      body.alert_url = f.elements['budget-alert'].value.trim();
    }
    const budget = await api('POST', wsPath('/budgets'), body);
    created.replaceChildren(budget.alert_secret
      ? wsShownOnce('new-budget', 'Budget set',
        el('p', {}, 'Alerts are signed with this secret: copy it now, it is shown only once.'),
        copyRow('budget-alert-secret', 'Alert signing secret', budget.alert_secret))
      : '');
    await render();
  });
  budgetForm.addEventListener('reset', () => setTimeout(fillSubjects));

  page('Limits and budgets',
    el('h2', {}, 'Workspace limits'),
    el('p', { class: 'hint' }, 'Rate limits on all of the workspace’s keys and apps together; a blank field is no limit. Each key’s own limits are on the Keys page, each app’s on the OAuth apps page.'),
    current, limitsForm, limitsError,
    el('h2', {}, 'Budgets'),
    el('p', { class: 'hint' }, 'Spend caps in USD per calendar month (UTC). A request that could pass one is refused before it runs.'),
    budgetForm, budgetError, created, budgetList);

  async function render() {
    const budgets = await api('GET', wsPath('/budgets'));
    const appliesTo = (b) => {
      switch (b.scope) {
        case 'workspace': return 'The whole workspace';
        case 'key': return `Key ${keyName(b.subject_id) || b.subject_id}`;
        case 'app': return `App ${appName(b.subject_id) || b.subject_id}`;
        default: return `Each user of app ${appName(b.subject_id) || b.subject_id}`;
      }
    };
    const rows = budgets.data.map((b) => {
      const [change, changeError] = wsForm(`budget-${b.id}-change`,
        [wsInput(`budget-${b.id}-amount`, 'New amount (USD)', { required: true, inputmode: 'decimal', size: 12, value: b.amount_usd })],
        'Change', async (f) => {
          await api('PATCH', `/admin/v1/budgets/${encodeURIComponent(b.id)}`, { amount_usd: f.elements[`budget-${b.id}-amount`].value.trim() });
          await render();
        }, false);
      return el('tr', { 'data-budget': b.id },
        el('td', {}, appliesTo(b)),
        el('td', { class: 'num', 'data-field': 'amount' }, wsMoney(b.amount_usd)),
        el('td', { class: 'num', 'data-field': 'spent' }, b.spent_usd === null ? 'per user' : wsMoney(b.spent_usd)),
        el('td', { class: 'num' }, b.reserved_usd === null ? '' : wsMoney(b.reserved_usd)),
        el('td', {}, b.alert_url ? el('code', {}, b.alert_url) : 'none'),
        el('td', {}, el('details', {}, el('summary', {}, 'Change', el('span', { class: 'visually-hidden' }, ` the budget of ${appliesTo(b)}`)), change, changeError)),
        el('td', {}, actionButton('Delete', `Delete budget of ${appliesTo(b)}`, `Delete the budget of ${appliesTo(b)}? Its spend is no longer capped.`,
          'DELETE', `/admin/v1/budgets/${encodeURIComponent(b.id)}`, budgetList, render)));
    });
    const month = budgets.data.length ? ` (${day(budgets.data[0].period_start).slice(0, 7)})` : '';
    budgetList.replaceChildren(table('Budgets', ['Applies to', { label: 'Amount a month', num: true }, { label: `Spent this month${month}`, num: true },
      { label: 'Reserved now', num: true }, 'Alerts to', '', ''], rows, 'No budgets yet.'));
  }
  await render();
}

// ---- invoices ----

// GET /v1/invoices, GET /v1/invoices/{id}, GET /v1/invoices/{id}/lines.csv. One invoice is /console/invoices?id=….
async function workspaceInvoices() {
  if (!wsOwnersOnly('Invoices', 'its invoices')) {
    return;
  }
  const id = new URLSearchParams(location.search).get('id');
  if (id) {
    await wsInvoice(id);
    return;
  }
  const list = el('div', { id: 'invoices-list' }, wsLoading());
  page('Invoices', el('p', { class: 'hint' }, 'One a calendar month (UTC), from the usage ledger. The current month is a draft until it ends.'), list);
  const answer = await api('GET', '/v1/invoices');
  const rows = answer.data.map((i) => el('tr', { 'data-invoice': i.id },
    el('td', {}, el('a', { href: `/console/invoices?id=${encodeURIComponent(i.id)}` }, day(i.period_start).slice(0, 7))),
    el('td', {}, el('code', {}, i.id)), el('td', {}, badge(i.status)),
    el('td', { class: 'num' }, count(i.lines.reduce((n, l) => n + l.quantities.requests, 0))),
    el('td', { class: 'num', 'data-field': 'total' }, wsMoney(i.total_usd))));
  list.replaceChildren(table('Invoices', ['Month', 'Invoice', 'Status', { label: 'Requests', num: true }, { label: 'Total', num: true }], rows, 'No invoices yet.'));
}

async function wsInvoice(id) {
  const invoice = await api('GET', `/v1/invoices/${encodeURIComponent(id)}`);
  const downloaded = el('span', { role: 'status', class: 'hint' });
  const csv = el('button', {
    type: 'button', class: 'secondary', id: 'invoice-csv',
    onclick: async () => {
      try {
        await wsDownload(`/v1/invoices/${encodeURIComponent(id)}/lines.csv`, `${invoice.id}.csv`);
        downloaded.textContent = `Downloaded ${invoice.id}.csv.`;
      } catch (error) {
        downloaded.replaceChildren(failure(error));
      }
    },
  }, 'Download CSV');
  const rows = invoice.lines.map((l) => el('tr', {},
    el('td', {}, l.model), el('td', {}, l.task), el('td', { class: 'num' }, count(l.quantities.requests)),
    el('td', { class: 'num' }, count(l.quantities.input_tokens)), el('td', { class: 'num' }, count(l.quantities.cached_input_tokens)),
    el('td', { class: 'num' }, count(l.quantities.output_tokens)), el('td', { class: 'num' }, count(l.quantities.audio_seconds)),
    el('td', { class: 'num' }, wsMoney(l.amount_usd))));
  page(`Invoice ${day(invoice.period_start).slice(0, 7)}`,
    el('p', {}, el('a', { href: '/console/invoices' }, 'All invoices')),
    el('dl', { class: 'facts' },
      el('dt', {}, 'Invoice'), el('dd', {}, el('code', {}, invoice.id)),
      el('dt', {}, 'Period'), el('dd', {}, `${dateTime(invoice.period_start)} to ${dateTime(invoice.period_end)}`),
      el('dt', {}, 'Status'), el('dd', { 'data-field': 'status' }, badge(invoice.status),
        invoice.finalized_at ? ` since ${dateTime(invoice.finalized_at)}` : ' (changes until the month is closed)'),
      el('dt', {}, 'Total'), el('dd', { 'data-field': 'total' }, wsMoney(invoice.total_usd))),
    table('Invoice lines', ['Model', 'Task', { label: 'Requests', num: true }, { label: 'Tokens in', num: true },
      { label: 'Cached tokens in', num: true }, { label: 'Tokens out', num: true }, { label: 'Audio seconds', num: true },
      { label: 'Amount', num: true }], rows, 'Nothing charged in this month.'),
    el('p', {}, csv, ' ', downloaded));
}

/** Saves what `path` answers as a file: fetched with the token (a plain link would carry none). */
async function wsDownload(path, filename) {
  if (!session.token || session.claims.exp * 1000 < Date.now() + 30_000) {
    return signIn(location.pathname + location.search);
  }
  const response = await fetch(path, { headers: { authorization: `Bearer ${session.token}` } });
  if (!response.ok) {
    throw new ApiError(response.status, `GET ${path} answered ${response.status}.`);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el('a', { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return undefined;
}
