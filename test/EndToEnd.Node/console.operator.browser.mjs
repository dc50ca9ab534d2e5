// The console's operator pages and usage charts in a real browser (Debian's Chromium, playwright-core), against the
// gateway `lattice up` started. An operator (an owner of the operator workspace) adds a catalog model with prices,
// edits them, adds and deletes a task class; the dev user sees no operator page; requests sent with two new keys to
// two models appear as bars, with their counts, in the Usage page's charts per model and per key.
//
// Run by test/EndToEnd.Tests/ConsoleBrowserTests.cs, which sets, besides those support.mjs reads,
//   LATTICE_ADMIN_KEY       the operator key `lattice up` made (to create the operator's account and the keys)
//   LATTICE_USER_EMAIL      the dev user `lattice up` made (owner of the dev workspace, not an operator)
//   LATTICE_USER_PASSWORD   and its password
//   LATTICE_CHAT_MODEL      a chat model the dev workspace can use, whose offer the new model copies
//   LATTICE_SCREENSHOTS     optional; a directory to save screenshots of the pages in (docs/console)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchChromium } from './chromium.mjs';
import { baseURL, client, safeJson } from './support.mjs';

const opts = { timeout: 120_000 };
const origin = baseURL.replace(/\/v1\/?$/, '');
const adminKey = process.env.LATTICE_ADMIN_KEY;
const email = process.env.LATTICE_USER_EMAIL;
const password = process.env.LATTICE_USER_PASSWORD;
const chatModel = process.env.LATTICE_CHAT_MODEL || 'lovelace:chat';
const screenshots = process.env.LATTICE_SCREENSHOTS || null;
const run = Date.now().toString(36);
const newModel = `lovelace:console-${run}`;
const operatorEmail = `operator-${run}@lattice.localhost`;
const operatorPassword = `operator-password-${run}`;

let browser;

async function admin(method, route, body) {
  const response = await fetch(`${origin}${route}`, {
    method,
    headers: { authorization: `Bearer ${adminKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${route}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A browser context signed in to the console with e-mail and password, on `path`. */
async function signedIn(who, secret, pathname) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('dialog', (dialog) => dialog.accept());
  await page.goto(`${origin}${pathname}`);
  await page.waitForURL((url) => url.pathname === '/account/login');
  await page.fill('#email', who);
  await page.fill('#password', secret);
  await Promise.all([page.waitForURL((url) => url.pathname === pathname), page.click('#sign-in')]);
  return { context, page };
}

async function shoot(page, name) {
  if (screenshots) {
    mkdirSync(screenshots, { recursive: true });
    await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
  }
}

describe('the console\'s operator pages and usage charts in Chromium', () => {
  before(async () => {
    assert.ok(adminKey && email && password, 'LATTICE_ADMIN_KEY, LATTICE_USER_EMAIL and LATTICE_USER_PASSWORD must be set (run through ConsoleBrowserTests)');
    browser = await launchChromium();
    // An operator: an owner of the operator workspace (and of no other, so the console asks no consent).
    const user = await admin('POST', '/admin/v1/users', { email: operatorEmail, name: 'Operator', password: operatorPassword, email_verified: true });
    await admin('POST', '/admin/v1/workspaces/ws_operator/members', { user_id: user.id, role: 'owner' });
  });

  after(async () => {
    await browser?.close();
  });

  test('an operator adds a model with prices, edits them, and adds and deletes a task class', opts, async () => {
    const { context, page } = await signedIn(operatorEmail, operatorPassword, '/console/catalog');
    try {
      await page.getByRole('heading', { level: 1, name: 'Catalog' }).waitFor();
      assert.match(await page.locator('#who').innerText(), /workspace ws_operator \(owner\) · Switch account · operator$/);
      assert.equal(await page.getByRole('link', { name: 'Task classes', exact: true }).isVisible(), true);
      // The existing catalog, with its offers.
      const chat = page.locator(`section[data-model="${chatModel}"]`);
      await chat.waitFor();
      assert.match(await chat.locator('tbody tr').first().innerText(), /standin-chat/);

      // A new model serving the same upstream, with prices.
      const [offer] = (await admin('GET', '/admin/v1/models')).data.find((m) => m.id === chatModel).offers;
      await page.getByRole('button', { name: 'Add a model' }).click();
      await page.getByLabel('Model id').fill(newModel);
      await page.getByLabel(/^Input, \$ per million tokens/).fill('1.5');
      await page.getByLabel(/^Output, \$ per million tokens/).fill('2');
      await page.getByLabel(/^Offers/).fill(JSON.stringify([{ base_url: offer.base_url, credential: offer.credential, upstream_model: offer.upstream_model }]));
      await page.getByRole('button', { name: 'Create model' }).click();
      const created = page.locator(`section[data-model="${newModel}"]`);
      await created.waitFor();
      assert.equal(await created.locator('[data-field=prices]').innerText(), 'Prices: input_per_mtok 1.5, output_per_mtok 2');

      // Edited: the output price changes, the input price is cleared; the API has exactly that.
      await page.getByRole('button', { name: `Edit model ${newModel}` }).click();
      await page.getByLabel(/^Input, \$ per million tokens/).fill('');
      await page.getByLabel(/^Output, \$ per million tokens/).fill('4.25');
      await page.getByRole('button', { name: 'Save model' }).click();
      await page.locator('#main p[role=status]', { hasText: `Model ${newModel} saved.` }).waitFor();
      assert.equal(await created.locator('[data-field=prices]').innerText(), 'Prices: output_per_mtok 4.25');
      const stored = (await admin('GET', '/admin/v1/models')).data.find((m) => m.id === newModel);
      assert.equal(stored.prices.output_per_mtok, 4.25, safeJson(stored));
      assert.ok(stored.prices.input_per_mtok == null, safeJson(stored));
      assert.equal(stored.offers[0].upstream_model, offer.upstream_model);

      // A bad offer list is refused with the API's message naming the field; nothing changes.
      await page.getByRole('button', { name: `Edit model ${newModel}` }).click();
      await page.getByLabel(/^Offers/).fill('[{"upstream_model": "x"}]');
      await page.getByRole('button', { name: 'Save model' }).click();
      assert.match(await page.locator('#model-form p.error').innerText(), /base_url/);
      await page.getByRole('button', { name: 'Cancel' }).click();
      await shoot(page, 'catalog');

      // Task classes: the built-ins, one added, then deleted; built-ins have no Delete.
      await page.getByRole('link', { name: 'Task classes', exact: true }).click();
      await page.getByRole('heading', { level: 1, name: 'Task classes' }).waitFor();
      await page.locator('tr[data-task-class="chat.completions"]').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Delete task class chat.completions' }).count(), 0);
      const taskName = `console.test-${run}`;
      await page.getByLabel(/^Name/).fill(taskName);
      await page.getByLabel('Metered in').selectOption('requests');
      await page.getByRole('button', { name: 'Add task class' }).click();
      const row = page.locator(`tr[data-task-class="${taskName}"]`);
      await row.waitFor();
      assert.match(await row.innerText(), /console\/test-\w+\s+requests\s+no/);
      assert.equal((await admin('GET', `/admin/v1/task-classes/${taskName}`)).metering_unit, 'requests');
      await shoot(page, 'task-classes');
      await page.getByRole('button', { name: `Delete task class ${taskName}` }).click();
      await row.waitFor({ state: 'detached' });
    } finally {
      await context.close();
    }
  });

  test('requests with two keys to two models show as bars per model and per key; the dev user sees no operator page', opts, async () => {
    const workspace = (await admin('GET', '/admin/v1/workspaces')).data.find((w) => w.name === 'dev');
    assert.ok(workspace, 'the dev workspace');
    const keyA = await admin('POST', `/admin/v1/workspaces/${workspace.id}/keys`, { name: `charts A ${run}` });
    const keyB = await admin('POST', `/admin/v1/workspaces/${workspace.id}/keys`, { name: `charts B ${run}` });
    const send = async (key, model) => {
      const answer = await client({ apiKey: key.key }).chat.completions.create({ model, messages: [{ role: 'user', content: 'chart me' }], max_tokens: 8 });
      assert.ok(answer.choices.length > 0, safeJson(answer));
    };
    await send(keyA, newModel);
    await send(keyA, newModel);
    await send(keyB, chatModel);

    const { context, page } = await signedIn(email, password, '/console/usage');
    try {
      await page.getByRole('heading', { level: 1, name: 'Usage' }).waitFor();
      // Figures as the charts show them: each bar's value, by its label.
      const figure = (chart, label) => page.locator(`#${chart} svg g[data-label="${label}"] text.value`);
      const value = async (locator) => ((await locator.count()) === 1 ? locator.textContent() : null);
      const shown = async () => ({
        model: await value(figure('usage-by-model', newModel)),
        a: await value(figure('usage-by-key', keyA.name)),
        b: await value(figure('usage-by-key', keyB.name)),
      });
      const deadline = Date.now() + 60_000;
      let seen = await shown();
      // The ledger commits in the background: the page is asked again (Refresh) until it has all three requests.
      while (!(seen.model === '2' && seen.a === '2' && seen.b === '1')) {
        assert.ok(Date.now() < deadline, `the charts by the deadline: ${safeJson(seen)}`);
        await page.getByRole('button', { name: 'Refresh' }).click();
        await page.locator('#usage-by-key svg, #usage-by-key p.hint').first().waitFor();
        seen = await shown();
      }
      assert.ok(await figure('usage-by-model', chatModel).count() === 1, 'the chat model has a bar too');
      const tooltip = await page.locator(`#usage-by-key g[data-label="${keyA.name}"] rect title`).textContent();
      assert.match(tooltip, new RegExp(`^charts A ${run}: 2 requests, [\\d,]+ tokens, \\$\\d+\\.\\d{6}$`));
      assert.equal(await page.locator(`#usage-by-key g[data-label="${keyA.name}"]`).getAttribute('data-id'), keyA.id);
      // The same figures as a table, for screen readers and keyboards.
      await page.locator('#usage-by-model summary').click();
      const numbers = page.locator('#usage-by-model table tr', { hasText: newModel });
      assert.match(await numbers.innerText(), new RegExp(`${newModel}\\s+${newModel}\\s+2\\s`));
      await shoot(page, 'usage-charts');

      // Not an operator: no operator links, and the pages say so.
      assert.equal(await page.getByRole('link', { name: 'Catalog', exact: true }).count(), 0);
      await page.goto(`${origin}/console/catalog`);
      await page.getByRole('heading', { level: 1, name: 'Catalog' }).waitFor();
      await page.getByText('Only operators of this Lattice see this page').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Add a model' }).count(), 0);
    } finally {
      await context.close();
    }
  });
});
