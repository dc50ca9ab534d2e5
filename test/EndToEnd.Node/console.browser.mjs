// The web console in a real browser: Debian's Chromium driven by playwright-core against the gateway `lattice up`
// started. Signing in (the one-click link `lattice up` printed, and the e-mail and password), the overview, a key
// created and shown once, a request made with it found in the usage log, a personal runtime paired and revoked.
//
// Not picked up by a plain `node --test` (the name does not end in .test.mjs): run by
// test/EndToEnd.Tests/ConsoleBrowserTests.cs, which starts the stack and sets, besides those support.mjs reads,
//   LATTICE_CONSOLE_SIGN_IN_URL  the one-click sign-in link `lattice up` printed (works once)
//   LATTICE_USER_EMAIL           the dev user `lattice up` made (owner of the dev workspace)
//   LATTICE_USER_PASSWORD        and its password
//   LATTICE_CHAT_MODEL           a chat model the dev workspace can use
//   LATTICE_SCREENSHOTS          optional; a directory to save screenshots of the pages in (docs/console)
//   LATTICE_CHROMIUM             optional; the browser to drive (default /usr/bin/chromium)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchChromium } from './chromium.mjs';
import { baseURL, client, safeJson } from './support.mjs';

const opts = { timeout: 120_000 };
const origin = baseURL.replace(/\/v1\/?$/, '');
const signInLink = process.env.LATTICE_CONSOLE_SIGN_IN_URL;
const email = process.env.LATTICE_USER_EMAIL;
const password = process.env.LATTICE_USER_PASSWORD;
const chatModel = process.env.LATTICE_CHAT_MODEL || 'lovelace:chat';
const screenshots = process.env.LATTICE_SCREENSHOTS || null;

let browser;
let context;
let page;

async function shoot(name) {
  if (screenshots) {
    mkdirSync(screenshots, { recursive: true });
    await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
  }
}

const bodyText = () => page.locator('body').innerText().catch((e) => `(no body: ${e.message})`);

/** Follows a console link as a person does: by its name in the navigation. */
async function open(name, path) {
  await page.getByRole('link', { name, exact: true }).click();
  await page.waitForURL((url) => url.pathname === path);
  await page.getByRole('heading', { level: 1, name }).waitFor();
}

/** Waits until `check` holds, running `refresh` between looks: the page is asked again, never slept on. */
async function until(what, check, refresh, deadlineMs = 60_000) {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (await check()) {
      return;
    }
    assert.ok(Date.now() < deadline, `${what} by the deadline; the page says: ${await bodyText()}`);
    await refresh();
  }
}

describe('the console in Chromium', () => {
  before(async () => {
    assert.ok(signInLink && email && password, 'LATTICE_CONSOLE_SIGN_IN_URL, LATTICE_USER_EMAIL and LATTICE_USER_PASSWORD must be set (run through ConsoleBrowserTests)');
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    page = await context.newPage();
    page.setDefaultTimeout(20_000);
    page.setDefaultNavigationTimeout(20_000);
    // Revoking asks "are you sure?"; the person says yes.
    page.on('dialog', (dialog) => dialog.accept());
  });

  after(async () => {
    await browser?.close();
  });

  test('the one-click link `lattice up` printed signs in and shows the overview; it works once', opts, async () => {
    await page.goto(signInLink);
    await page.waitForURL((url) => url.pathname === '/console');
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    assert.equal(new URL(page.url()).origin, origin);
    assert.match(await page.locator('#who').innerText(), new RegExp(`${email.replace(/[.]/g, '\\.')} · workspace ws_\\w+ \\(owner\\)`));
    for (const card of ['#today', '#month']) {
      for (const field of ['requests', 'input', 'output', 'cost', 'errors']) {
        assert.match(await page.locator(`${card} [data-field=${field}]`).innerText(), /^\$?[\d,.]+$/, `${card} ${field}`);
      }
    }
    assert.ok((await context.cookies()).some((c) => c.name === 'lattice_session'), 'a session cookie');
    await shoot('overview');

    // The link is spent: opened again, in a browser with no session, it signs nobody in.
    const other = await browser.newContext();
    try {
      const again = await other.newPage();
      const response = await again.goto(signInLink);
      assert.equal(response.status(), 404);
      assert.match(await again.locator('#message').innerText(), /used already/);
      assert.ok(!(await other.cookies()).some((c) => c.name === 'lattice_session'), 'no session from a spent link');
    } finally {
      await other.close();
    }
  });

  test('signing in with e-mail and password lands back on the page asked for', opts, async () => {
    const fresh = await browser.newContext();
    try {
      const p = await fresh.newPage();
      await p.goto(`${origin}/console/usage`);
      await p.waitForURL((url) => url.pathname === '/account/login');
      await p.fill('#email', email);
      await p.fill('#password', password);
      await Promise.all([p.waitForURL((url) => url.pathname === '/console/usage'), p.click('#sign-in')]);
      await p.getByRole('heading', { level: 1, name: 'Usage' }).waitFor();
    } finally {
      await fresh.close();
    }
  });

  test('a key is created, its secret shown once, a request with it shows in the usage log, and revoking it stops it', opts, async () => {
    await open('Keys', '/console/keys');
    const name = `console e2e ${Date.now()}`;
    await page.getByLabel('Name').fill(name);
    await page.getByRole('button', { name: 'Create key' }).click();
    const secretField = page.locator('#new-key-secret');
    await secretField.waitFor();
    const secret = await secretField.inputValue();
    assert.match(secret, /^sk_\w{20,}$/);
    assert.equal(await page.locator('#new-key').getByRole('button', { name: 'Copy' }).count(), 1);
    const row = page.locator('tr', { hasText: name });
    await row.waitFor();
    const keyId = await row.getAttribute('data-key');
    assert.match(keyId, /^key_/);
    assert.ok(!(await row.innerText()).includes(secret), 'the list shows a prefix, never the secret');

    // Gone after a reload: the page kept it nowhere.
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Keys' }).waitFor();
    await page.locator('tr', { hasText: name }).waitFor();
    assert.equal(await page.locator('#new-key-secret').count(), 0);
    assert.ok(!(await bodyText()).includes(secret), 'the secret is not on the page after a reload');
    await shoot('keys');

    // A request with the new key…
    const withKey = client({ apiKey: secret });
    const { data: completion, response } = await withKey.chat.completions
      .create({ model: chatModel, messages: [{ role: 'user', content: 'hello from the console test' }], max_tokens: 8 })
      .withResponse();
    assert.ok(completion.choices.length > 0, safeJson(completion));
    const requestId = response.headers.get('x-request-id');
    assert.ok(requestId, 'the gateway names the request');

    // …is in the usage log, filtered to that key, as soon as the ledger has it.
    await open('Usage', '/console/usage');
    await page.getByLabel('Key id').fill(keyId);
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.waitForURL((url) => url.searchParams.get('key_id') === keyId);
    const line = page.locator(`tr[data-request="${requestId}"]`);
    await until('the request in the usage log', async () => (await line.count()) === 1, async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.locator('#usage-log table, #usage-log p.hint').first().waitFor();
    });
    const cells = await line.locator('td').allInnerTexts();
    assert.equal(cells[2], chatModel, safeJson(cells));
    assert.equal(cells[4], keyId, safeJson(cells));
    assert.match(cells[5], /ok/, safeJson(cells));
    assert.ok(await page.locator('#usage-chart svg rect.bar').count() >= 30, 'a bar per day');
    await shoot('usage');

    // Revoked from the console, the key stops working at once.
    await open('Keys', '/console/keys');
    await page.getByRole('button', { name: `Revoke key ${name}` }).click();
    await page.locator(`tr[data-key="${keyId}"] .badge.revoked`).waitFor();
    const refused = await withKey.models.list().then(() => null, (e) => e);
    assert.equal(refused?.status, 401, `a revoked key is refused: ${refused}`);
  });

  test('a personal runtime is added with the command to pair it, pairs, and once revoked says so', opts, async () => {
    await open('Personal runtimes', '/console/runtimes');
    const name = `console runtime ${Date.now()}`;
    await page.getByLabel('Name').fill(name);
    await page.getByRole('button', { name: 'Add a runtime' }).click();
    const command = (await page.locator('#pair-command').innerText()).trim();
    const match = command.match(/^lattice relay connect --gateway (\S+) --token (lbt_\w+)$/);
    assert.ok(match, `the pairing command: ${command}`);
    assert.equal(match[1], origin);
    const row = page.locator('tr', { hasText: name });
    await row.locator('.badge.unpaired').waitFor();

    // What `lattice relay connect` does first: trade the token for the runtime's credential.
    const paired = await fetch(`${origin}/v1/runtimes/pair`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ bootstrapToken: match[2] }),
    });
    assert.equal(paired.status, 200, await paired.text());
    // The page refreshes the status on its own.
    await row.locator('.badge.offline').waitFor({ timeout: 30_000 });
    await shoot('runtimes');

    await page.getByRole('button', { name: `Revoke runtime ${name}` }).click();
    await row.locator('.badge.revoked').waitFor();
    assert.equal(await page.getByRole('button', { name: `Revoke runtime ${name}` }).count(), 0);
  });
});
