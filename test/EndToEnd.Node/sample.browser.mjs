// The sample app (samples/Lattice.Samples.SealedChat) in a real browser: Debian's Chromium driven by playwright-core.
// Sign in with Lattice, consent, choose the runtime, stream a sealed answer; then stop the runtime's daemon (the app
// shows reconnect_runtime) and revoke the grant (the app shows reauthorize, and signing in again works).
//
// Not picked up by a plain `node --test` (the name does not end in .test.mjs): run by
// test/EndToEnd.Tests/SampleAppBrowserTests.cs, which starts the gateway, a daemon and the app, and sets, besides
// those support.mjs reads,
//   LATTICE_ADMIN_KEY, LATTICE_WORKSPACE_ID    the operator key and the workspace (to find and revoke the grant)
//   LATTICE_SAMPLE_URL                         where the sample app listens
//   LATTICE_SAMPLE_CLIENT_ID                   its OAuth client id
//   LATTICE_SAMPLE_USER_ID, _EMAIL, _PASSWORD  the user who signs in
//   LATTICE_SAMPLE_RUNTIME_ID, _DAEMON_PID     the runtime "sample runtime" and its daemon's process

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium } from './chromium.mjs';
import { apiKey, baseURL, safeJson } from './support.mjs';

const origin = baseURL.replace(/\/v1\/?$/, '');
const env = (name) => {
  assert.ok(process.env[name], `${name} must be set (run through SampleAppBrowserTests)`);
  return process.env[name];
};
const sampleUrl = env('LATTICE_SAMPLE_URL');
const runtimeId = env('LATTICE_SAMPLE_RUNTIME_ID');
// What the daemon's fixed engine streams (three chunks), as it must appear on the page.
const ANSWER = 'tick tick tick ';

async function api(path, key, method = 'GET') {
  const response = await fetch(origin + path, { method, headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(20_000) });
  const body = await response.json();
  assert.ok(response.ok, `${method} ${path} -> ${response.status} ${safeJson(body)}`);
  return body;
}

async function expectScreen(page, screen, title) {
  await page.waitForURL((url) => url.pathname === `/problem/${screen}`);
  assert.equal(await page.locator('#screen').getAttribute('data-screen'), screen);
  assert.equal(await page.locator('h1').innerText(), title);
}

async function ask(page, prompt) {
  await page.fill('#prompt', prompt);
  await page.click('#send');
}

describe('the Sealed Chat sample in Chromium', () => {
  let browser;
  let page;

  before(async () => {
    browser = await launchChromium();
    page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(30_000);
    page.setDefaultNavigationTimeout(30_000);
  });

  after(async () => {
    await browser?.close();
  });

  test('sign in, consent, choose the runtime and stream a sealed answer', { timeout: 120_000 }, async () => {
    await page.goto(sampleUrl);
    assert.equal(await page.locator('h1').innerText(), 'Sealed Chat');
    await Promise.all([page.waitForURL((url) => url.pathname === '/account/login'), page.click('#sign-in')]);
    assert.equal(new URL(page.url()).origin, origin, 'signing in happens on the gateway');
    await page.fill('#email', env('LATTICE_SAMPLE_USER_EMAIL'));
    await page.fill('#password', env('LATTICE_SAMPLE_USER_PASSWORD'));
    await Promise.all([page.waitForURL((url) => url.pathname === '/connect/authorize'), page.click('#sign-in')]);
    assert.equal(await page.locator('h1').innerText(), 'Authorize Sealed Chat');

    await Promise.all([page.waitForURL(`${sampleUrl}/runtimes`), page.click('#allow')]);
    assert.equal(await page.locator('h1').innerText(), 'Choose a runtime');
    await Promise.all([page.waitForURL(`${sampleUrl}/`), page.getByRole('button', { name: 'Use sample runtime' }).click()]);
    assert.equal(await page.locator('#runtime').innerText(), 'sample runtime');

    await ask(page, 'Hello, my own runtime');
    await page.locator('#status', { hasText: 'Done' }).waitFor();
    assert.equal(await page.locator('#answer').textContent(), ANSWER);
  });

  test('the daemon stops: the app asks to reconnect the runtime', { timeout: 120_000 }, async () => {
    process.kill(Number(env('LATTICE_SAMPLE_DAEMON_PID')), 'SIGTERM');
    // Wait until the gateway has seen the link go (the condition the app's next call depends on).
    for (;;) {
      const runtime = await api(`/v1/personal-runtimes/${runtimeId}`, apiKey);
      if (runtime.status === 'offline') {
        break;
      }
      assert.equal(runtime.status, 'reachable', safeJson(runtime));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    await ask(page, 'Are you there?');
    await expectScreen(page, 'reconnect_runtime', 'Reconnect your runtime');
    assert.match(await page.locator('#request-id').innerText(), /\S/, 'the gateway request id is shown for support');
    assert.equal(await page.locator('#action').getAttribute('href'), '/');
  });

  test('the grant is revoked: the app asks to sign in again, and signing in again works', { timeout: 120_000 }, async () => {
    const adminKey = env('LATTICE_ADMIN_KEY');
    const grants = await api(`/admin/v1/workspaces/${env('LATTICE_WORKSPACE_ID')}/grants`, adminKey);
    const grant = grants.data.find((g) => g.user_id === env('LATTICE_SAMPLE_USER_ID') && g.client_id === env('LATTICE_SAMPLE_CLIENT_ID'));
    assert.ok(grant, safeJson(grants));
    await api(`/admin/v1/grants/${grant.id}/revoke`, adminKey, 'POST');

    await page.goto(sampleUrl);
    await ask(page, 'Still allowed?');
    await expectScreen(page, 'reauthorize', 'Sign in again');

    // Still signed in on the gateway, but the grant is gone: consent is asked again.
    await Promise.all([page.waitForURL((url) => url.pathname === '/connect/authorize'), page.click('#action')]);
    await Promise.all([page.waitForURL(`${sampleUrl}/**`), page.click('#allow')]);
    // The stopped runtime is no longer offered.
    assert.equal(await page.getByRole('button', { name: 'Use sample runtime' }).count(), 0);
  });
});
