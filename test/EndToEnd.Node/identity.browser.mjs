// Sign in with Lattice in a real browser: Debian's Chromium driven by playwright-core against the gateway
// process. The sign-in page, the consent page (allow all, allow fewer scopes, deny) and the device code page,
// each ending in a token that is then used against the API.
//
// Not picked up by a plain `node --test` (the name does not end in .test.mjs): run by
// test/EndToEnd.Tests/BrowserSignInTests.cs, which starts the stack and sets, besides those support.mjs reads,
//   LATTICE_ADMIN_KEY     the operator key (registers users, memberships and the app)
//   LATTICE_WORKSPACE_ID  the workspace the users join
//   LATTICE_CHROMIUM      optional; the browser to drive (default /usr/bin/chromium, which .ci/run installs)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import OpenAI from 'openai';
import { launchChromium } from './chromium.mjs';
import { baseURL, client, describeError, rejection, safeJson } from './support.mjs';

const opts = { timeout: 90_000 };
const origin = baseURL.replace(/\/v1\/?$/, '');
const adminKey = process.env.LATTICE_ADMIN_KEY;
const workspaceId = process.env.LATTICE_WORKSPACE_ID;
const PASSWORD = 'correct horse battery staple';
// Characters that must be escaped in HTML, so the page has to encode the name for it to show as registered.
const APP_NAME = `Ada's <Notebook> & "Co"`;

const INFERENCE = 'lattice:compute:inference';
const CATALOG = 'lattice:compute:catalog:read';
const STREAMING = 'lattice:compute:streaming';
const USAGE = 'lattice:compute:usage:read';

// What the consent page tells a person each scope lets the app do (Identity/Pages.cs); people decide on these words.
const DESCRIPTIONS = {
  [INFERENCE]: 'Run models on your compute and list your runtimes',
  [CATALOG]: 'See which models you can use',
  [STREAMING]: 'Open realtime connections',
  [USAGE]: 'Read your usage',
  offline_access: 'Stay connected when you are not using it (refresh tokens)',
};

let browser;
let callback; // { server, url, hits }
let app; // { client_id }

/** The app's redirect URI: a loopback listener, as a native app or CLI has (RFC 8252). */
async function startCallback() {
  const hits = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Back in the app</title><p id="back">Back in the app</p>');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return { server, url: `http://127.0.0.1:${server.address().port}/callback`, hits };
}

async function api(method, path, { key = adminKey, json, form } = {}) {
  const headers = {};
  let body;
  if (key) {
    headers.authorization = `Bearer ${key}`;
  }
  if (json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const response = await fetch(origin + path, { method, headers, body, signal: AbortSignal.timeout(20_000) });
  const text = await response.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: response.status, body: parsed };
}

async function admin(method, path, json) {
  const { status, body } = await api(method, path, { json });
  assert.ok(status >= 200 && status < 300, `${method} ${path} -> ${status} ${safeJson(body)}`);
  return body;
}

/** A new user in the workspace (each test its own, so no test finds another's grant). */
async function newUser(label) {
  const email = `${label}-${randomBytes(6).toString('hex')}@example.test`;
  const user = await admin('POST', '/admin/v1/users', { email, name: `Browser ${label}`, password: PASSWORD });
  await admin('POST', `/admin/v1/workspaces/${workspaceId}/members`, { user_id: user.id });
  return { id: user.id, email };
}

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier, 'ascii').digest('base64url');
  return { verifier, challenge };
}

function authorizeUrl(scopes, challenge, state) {
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: app.client_id,
    redirect_uri: callback.url,
    scope: scopes.join(' '),
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  return `${origin}/connect/authorize?${query}`;
}

async function exchange(code, verifier) {
  const { status, body } = await api('POST', '/connect/token', {
    key: null,
    form: { grant_type: 'authorization_code', code, redirect_uri: callback.url, client_id: app.client_id, code_verifier: verifier },
  });
  assert.equal(status, 200, `token exchange: ${safeJson(body)}`);
  return body;
}

/** A fresh browser profile's worth of state: no cookies, no session. */
async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.setDefaultNavigationTimeout(20_000);
  return { context, page };
}

const text = (page, selector) => page.locator(selector).innerText();
const bodyText = (page) => page.locator('body').innerText().catch((e) => `(no body: ${e.message})`);
const pathOf = (page) => new URL(page.url()).pathname;

async function expectPath(page, path) {
  assert.equal(pathOf(page), path, `at ${page.url()}: ${await bodyText(page)}`);
}

/** Fills and submits the sign-in form; returns the response to the form post. */
async function submitSignIn(page, email, password) {
  await page.fill('#email', email);
  await page.fill('#password', password);
  const [response] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    page.click('#sign-in'),
  ]);
  return response;
}

async function signIn(page, email) {
  await expectPath(page, '/account/login');
  await submitSignIn(page, email, PASSWORD);
}

/** The consent page as a person sees it: who asks, as whom, and which scopes with which words. */
async function expectConsent(page, email, scopes, path = '/connect/authorize') {
  await expectPath(page, path);
  assert.equal(await page.title(), `Authorize ${APP_NAME} · Lattice`);
  assert.equal(await text(page, 'h1'), `Authorize ${APP_NAME}`);
  assert.equal(await text(page, '#app-name'), APP_NAME);
  assert.equal(await page.locator('p', { has: page.locator('#app-name') }).innerText(), `${APP_NAME} wants to use Lattice as ${email}.`);
  assert.equal(await text(page, 'legend'), 'Allow it to:');
  const listed = await page.locator('input[name=granted_scope]').evaluateAll((boxes) => boxes.map((b) => ({ scope: b.value, checked: b.checked })));
  assert.deepEqual(listed.map((b) => b.scope).sort(), [...scopes].sort(), 'the consent page lists exactly the requested scopes');
  assert.ok(listed.every((b) => b.checked), `every requested scope starts checked: ${safeJson(listed)}`);
  for (const scope of scopes) {
    const label = page.locator('label', { has: page.locator(`input[name=granted_scope][value="${scope}"]`) });
    const words = (await label.textContent()).replace(/\s+/g, ' ').trim();
    assert.equal(words, `${DESCRIPTIONS[scope]} ${scope}`, `label of ${scope}`);
    assert.ok(await label.locator('input').isVisible(), `checkbox of ${scope} is visible`);
  }
  assert.equal(await text(page, '#allow'), 'Allow');
  assert.equal(await text(page, '#deny'), 'Deny');
}

/** Clicks a consent button and waits for the browser to land on the app's redirect URI; returns its query. */
async function decideAndLand(page, button) {
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(callback.url), { waitUntil: 'load' }),
    page.click(button),
  ]);
  assert.equal(await text(page, '#back'), 'Back in the app');
  return new URL(page.url()).searchParams;
}

describe('sign in with Lattice in Chromium', () => {
  before(async () => {
    assert.ok(adminKey && workspaceId, 'LATTICE_ADMIN_KEY and LATTICE_WORKSPACE_ID must be set (run through BrowserSignInTests)');
    callback = await startCallback();
    app = await admin('POST', `/admin/v1/workspaces/${workspaceId}/apps`, {
      name: APP_NAME,
      redirect_uris: [callback.url],
      scopes: [INFERENCE, CATALOG, STREAMING, USAGE, 'offline_access'],
      confidential: false,
      device_flow: true,
    });
    assert.equal(app.client_secret ?? null, null, `a public app has no secret: ${safeJson(app)}`);
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (callback ? callback.server.close(resolve) : resolve()));
  });

  test('authorize -> sign in (wrong password first) -> consent -> Allow -> the code buys a working token', opts, async () => {
    const user = await newUser('allow');
    const scopes = [INFERENCE, CATALOG, STREAMING, 'offline_access'];
    const { verifier, challenge } = pkce();
    const { context, page } = await newPage();
    try {
      await page.goto(authorizeUrl(scopes, challenge, 'state-allow'));
      await expectPath(page, '/account/login');
      assert.ok(new URL(page.url()).searchParams.get('returnUrl').startsWith('/connect/authorize?'), page.url());
      assert.equal(await page.title(), 'Sign in to Lattice · Lattice');
      assert.equal(await text(page, 'h1'), 'Sign in to Lattice');
      assert.equal(await page.locator('#error').count(), 0, 'no error before the first attempt');
      assert.equal(await text(page, 'label[for=email]'), 'E-mail');
      assert.equal(await text(page, 'label[for=password]'), 'Password');
      assert.equal(await text(page, '#sign-in'), 'Sign in');

      const refused = await submitSignIn(page, user.email, 'not the password');
      assert.equal(refused.status(), 401);
      await expectPath(page, '/account/login');
      assert.equal(await text(page, '#error'), "That e-mail and password don't match.");
      assert.equal(await page.inputValue('#email'), user.email, 'the e-mail is kept');
      assert.equal(await page.inputValue('#password'), '', 'the password is not');

      await submitSignIn(page, user.email, PASSWORD);
      await expectConsent(page, user.email, scopes);
      const cookies = (await context.cookies()).map((c) => c.name);
      assert.ok(cookies.includes('lattice_session'), `signed in: ${safeJson(cookies)}`);

      const query = await decideAndLand(page, '#allow');
      assert.equal(query.get('state'), 'state-allow');
      assert.equal(query.get('error'), null, `no error: ${query}`);
      const code = query.get('code');
      assert.ok(code, `a code: ${query}`);

      const tokens = await exchange(code, verifier);
      assert.equal(tokens.token_type, 'Bearer');
      assert.ok(tokens.access_token.startsWith('eyJ'), safeJson(tokens));
      assert.ok(tokens.refresh_token, 'offline_access was granted: a refresh token');
      assert.deepEqual(tokens.scope.split(' ').sort(), [...scopes].sort());

      const oauth = client({ apiKey: tokens.access_token });
      const models = [];
      for await (const model of oauth.models.list()) {
        models.push(model.id);
      }
      assert.ok(models.includes('lovelace:chat'), safeJson(models));
      const chat = await oauth.chat.completions.create({ model: 'lovelace:chat', messages: [{ role: 'user', content: 'hello' }] });
      assert.match(chat.choices[0].message.content, /You said: hello/);

      // The same person, same app, same scopes again: the grant is remembered, no second consent page.
      await page.goto(authorizeUrl(scopes, pkce().challenge, 'state-again'));
      await page.waitForURL((url) => url.href.startsWith(callback.url));
      const again = new URL(page.url()).searchParams;
      assert.equal(again.get('state'), 'state-again');
      assert.ok(again.get('code'), `a code without consent: ${again}`);
    } finally {
      await context.close();
    }
  });

  test('unchecking scopes on the consent page grants only the rest', opts, async () => {
    const user = await newUser('fewer');
    const scopes = [INFERENCE, CATALOG, STREAMING, USAGE];
    const { verifier, challenge } = pkce();
    const { context, page } = await newPage();
    try {
      await page.goto(authorizeUrl(scopes, challenge, 'state-fewer'));
      await signIn(page, user.email);
      await expectConsent(page, user.email, scopes);

      await page.uncheck(`input[name=granted_scope][value="${INFERENCE}"]`);
      await page.uncheck(`input[name=granted_scope][value="${STREAMING}"]`);
      const query = await decideAndLand(page, '#allow');
      assert.equal(query.get('state'), 'state-fewer');
      const tokens = await exchange(query.get('code'), verifier);
      assert.deepEqual(tokens.scope.split(' ').sort(), [CATALOG, USAGE].sort(), safeJson(tokens));
      const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString('utf8'));
      assert.deepEqual(claims.scope.split(' ').sort(), [CATALOG, USAGE].sort(), safeJson(claims));
      assert.equal(tokens.refresh_token, undefined, 'offline_access was not asked for');

      const oauth = client({ apiKey: tokens.access_token });
      const page1 = await oauth.models.list();
      assert.ok(page1.data.some((m) => m.id === 'lovelace:chat'), 'catalog:read still lists the models');
      const err = await rejection(oauth.chat.completions.create({ model: 'lovelace:chat', messages: [{ role: 'user', content: 'hi' }] }));
      assert.ok(err instanceof OpenAI.PermissionDeniedError, describeError(err));
      assert.equal(err.status, 403, describeError(err));
      assert.equal(err.code, 'insufficient_scopes', describeError(err));
      assert.match(err.message, /lattice:compute:inference/, describeError(err));
    } finally {
      await context.close();
    }
  });

  test('Deny sends the browser back to the app with error=access_denied and the state', opts, async () => {
    const user = await newUser('deny');
    const { challenge } = pkce();
    const { context, page } = await newPage();
    try {
      await page.goto(authorizeUrl([INFERENCE, CATALOG], challenge, 'state-deny'));
      await signIn(page, user.email);
      await expectConsent(page, user.email, [INFERENCE, CATALOG]);
      const query = await decideAndLand(page, '#deny');
      assert.equal(query.get('error'), 'access_denied', `${query}`);
      assert.equal(query.get('state'), 'state-deny');
      assert.equal(query.get('code'), null, `no code: ${query}`);

      const grants = await admin('GET', `/admin/v1/workspaces/${workspaceId}/grants`);
      assert.ok(!grants.data.some((g) => g.user_id === user.id), `no grant recorded: ${safeJson(grants)}`);
    } finally {
      await context.close();
    }
  });

  test('device flow: the code entered at /connect/verify and approved lets the device poll a token', opts, async () => {
    const user = await newUser('device');
    const scopes = [INFERENCE, CATALOG, STREAMING];
    const started = await api('POST', '/connect/device', { key: null, form: { client_id: app.client_id, scope: scopes.join(' ') } });
    assert.equal(started.status, 200, safeJson(started.body));
    const { device_code: deviceCode, user_code: userCode, verification_uri: verificationUri } = started.body;
    assert.ok(deviceCode && userCode, safeJson(started.body));
    assert.equal(new URL(verificationUri).pathname, '/connect/verify', safeJson(started.body));

    const poll = () => api('POST', '/connect/token', {
      key: null,
      form: { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: deviceCode, client_id: app.client_id },
    });
    const pending = await poll();
    assert.equal(pending.status, 400, safeJson(pending.body));
    assert.equal(pending.body.error, 'authorization_pending', safeJson(pending.body));

    const { context, page } = await newPage();
    try {
      // The person types the address the device shows; the gateway is reached on its own origin.
      await page.goto(origin + new URL(verificationUri).pathname);
      await signIn(page, user.email);
      await expectPath(page, '/connect/verify');
      assert.equal(await text(page, 'h1'), 'Connect a device');
      assert.equal(await page.locator('#error').count(), 0);
      assert.equal(await text(page, 'p'), 'Enter the code your device shows.');

      await page.fill('#user_code', 'NOT-A-CODE');
      await Promise.all([page.waitForNavigation(), page.click('#continue')]);
      assert.equal(await text(page, '#error'), 'That code is not valid or has expired. Check it and try again.');

      await page.fill('#user_code', userCode);
      await Promise.all([page.waitForNavigation(), page.click('#continue')]);
      await expectConsent(page, user.email, scopes, '/connect/verify');
      await page.uncheck(`input[name=granted_scope][value="${STREAMING}"]`);
      await Promise.all([page.waitForURL((url) => url.pathname === '/connect/verify/done'), page.click('#allow')]);
      assert.equal(await text(page, 'h1'), 'Device connected');
      assert.equal(await text(page, '#message'), 'You can close this window and go back to your device.');
    } finally {
      await context.close();
    }

    // The device polls as it was told to; the approval is there by the next poll.
    const interval = Math.max(1, Number(started.body.interval) || 5) * 1000;
    const deadline = Date.now() + 40_000;
    let tokens;
    for (;;) {
      const answer = await poll();
      if (answer.status === 200) {
        tokens = answer.body;
        break;
      }
      assert.ok(['authorization_pending', 'slow_down'].includes(answer.body.error), safeJson(answer.body));
      assert.ok(Date.now() < deadline, `no token by the deadline: ${safeJson(answer.body)}`);
      await new Promise((resolve) => setTimeout(resolve, interval));
    }
    assert.ok(tokens.access_token.startsWith('eyJ'), safeJson(tokens));
    assert.deepEqual(tokens.scope.split(' ').sort(), [INFERENCE, CATALOG].sort(), safeJson(tokens));
    const device = client({ apiKey: tokens.access_token });
    const models = await device.models.list();
    assert.ok(models.data.some((m) => m.id === 'lovelace:chat'), safeJson(models.data));
    // Streaming over SSE needs only the inference scope (the streaming scope, unchecked above, is for realtime links).
    const stream = await device.chat.completions.create({ model: 'lovelace:chat', messages: [{ role: 'user', content: 'hi' }], stream: true });
    let streamed = '';
    for await (const chunk of stream) {
      streamed += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.equal(streamed, 'You said: hi');

    // The approval is the user's grant like any other: listed with what was granted, and revoking it cuts the device off.
    const grants = await admin('GET', `/admin/v1/workspaces/${workspaceId}/grants`);
    const grant = grants.data.find((g) => g.user_id === user.id);
    assert.ok(grant, safeJson(grants));
    assert.equal(grant.client_id, app.client_id);
    assert.deepEqual([...grant.scopes].sort(), [INFERENCE, CATALOG].sort(), safeJson(grant));
    await admin('POST', `/admin/v1/grants/${grant.id}/revoke`);
    const err = await rejection(device.models.list());
    assert.equal(err.status, 401, describeError(err));
    assert.equal(err.code, 'revoked_grant', describeError(err));
  });
});

// ---- Return URLs (issue 11 §5): the sign-in page never sends the browser off-site. ----
// A block of its own, with its own browser: whatever the return URL says, once signed in Chromium is on the gateway.
describe('sign-in return URLs stay on the gateway in Chromium', () => {
  // As typed into a link or a crafted form: a tab Chromium drops ("/\t/evil.example" becomes "//evil.example"), a
  // backslash it reads as '/', a protocol-relative URL, and an absolute one.
  const HOSTILE = ['/\t/evil.example', '/\\evil.example', '//evil.example', '/\r\n/evil.example', 'https://evil.example/'];
  let returnBrowser;

  before(async () => {
    assert.ok(adminKey && workspaceId, 'LATTICE_ADMIN_KEY and LATTICE_WORKSPACE_ID must be set (run through BrowserSignInTests)');
    returnBrowser = await launchChromium();
  });

  after(async () => {
    await returnBrowser?.close();
  });

  async function freshPage() {
    const context = await returnBrowser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    page.setDefaultNavigationTimeout(20_000);
    return { context, page };
  }

  async function expectOnGateway(page, returnUrl) {
    const at = new URL(page.url());
    assert.equal(at.origin, origin, `return URL ${JSON.stringify(returnUrl)} left the gateway for ${page.url()}`);
    assert.equal(at.pathname, '/account/login', `return URL ${JSON.stringify(returnUrl)} ended at ${page.url()}`);
  }

  test('a hostile returnUrl in the link falls back to the sign-in page', opts, async () => {
    const user = await newUser('return-link');
    for (const returnUrl of HOSTILE) {
      const { context, page } = await freshPage();
      try {
        await page.goto(`${origin}/account/login?returnUrl=${encodeURIComponent(returnUrl)}`);
        assert.equal(await page.inputValue('input[name=returnUrl]'), '/account/login', `the form carries no ${JSON.stringify(returnUrl)}`);
        await submitSignIn(page, user.email, PASSWORD);
        await expectOnGateway(page, returnUrl);
        assert.ok((await context.cookies()).some((c) => c.name === 'lattice_session'), 'signed in');
      } finally {
        await context.close();
      }
    }
  });

  test('a hostile returnUrl posted through the real form falls back to the sign-in page', opts, async () => {
    const user = await newUser('return-form');
    for (const returnUrl of HOSTILE) {
      const { context, page } = await freshPage();
      try {
        await page.goto(`${origin}/account/login`);
        // A crafted page would post this; here the real form is made to carry it.
        await page.locator('input[name=returnUrl]').evaluate((input, value) => { input.value = value; }, returnUrl);
        await submitSignIn(page, user.email, PASSWORD);
        await expectOnGateway(page, returnUrl);
        assert.ok((await context.cookies()).some((c) => c.name === 'lattice_session'), 'signed in');
      } finally {
        await context.close();
      }
    }
  });
});
