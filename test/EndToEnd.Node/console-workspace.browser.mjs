// The console's workspace pages in a real browser (Debian's Chromium, playwright-core) against the gateway `lattice up`
// started, signed in with the dev user's e-mail and password: an OAuth app registered, limited and deleted, and the
// console's own grant listed; someone invited, joining through the link and removed, an invitation withdrawn; a key's
// limits, the workspace's limits and a budget set; a request made and found on the month's invoice.
// LATTICE_CHAT_MODEL is a chat model priced at $0.25 a request that nothing else uses (ConsoleBrowserTests adds it).
//
// Run by test/EndToEnd.Tests/ConsoleBrowserTests.cs with the same environment as console.browser.mjs (the sign-in
// link is not used: console.browser.mjs spends it).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { launchChromium } from './chromium.mjs';
import { baseURL, client, safeJson } from './support.mjs';

const opts = { timeout: 120_000 };
const origin = baseURL.replace(/\/v1\/?$/, '');
const email = process.env.LATTICE_USER_EMAIL;
const password = process.env.LATTICE_USER_PASSWORD;
const chatModel = process.env.LATTICE_CHAT_MODEL || 'lovelace:chat';
const stamp = Date.now();

let browser;
let context;
let page;

const bodyText = () => page.locator('body').innerText().catch((e) => `(no body: ${e.message})`);

/** Follows a console link as a person does: by its name in the navigation. */
async function open(name, path, heading = name) {
  await page.getByRole('navigation').getByRole('link', { name, exact: true }).click();
  await page.waitForURL((url) => url.pathname === path);
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

async function reload(heading) {
  await page.reload();
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

const text = (locator) => locator.innerText().then((t) => t.trim());

describe('the console’s workspace pages in Chromium', () => {
  let keyName;
  let keyId;
  let keySecret;

  before(async () => {
    assert.ok(email && password, 'LATTICE_USER_EMAIL and LATTICE_USER_PASSWORD must be set (run through ConsoleBrowserTests)');
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
    page = await context.newPage();
    page.setDefaultTimeout(20_000);
    page.setDefaultNavigationTimeout(20_000);
    page.on('dialog', (dialog) => dialog.accept());
    await page.goto(`${origin}/console`);
    await page.waitForURL((url) => url.pathname === '/account/login');
    await page.fill('#email', email);
    await page.fill('#password', password);
    await Promise.all([page.waitForURL((url) => url.pathname === '/console'), page.click('#sign-in')]);
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  });

  after(async () => {
    await browser?.close();
  });

  test('an OAuth app is registered with its secret shown once, limited per user, and deleted; the console’s grant is listed', opts, async () => {
    await open('OAuth apps', '/console/apps');
    const name = `e2e app ${stamp}`;
    await page.getByLabel('Name').fill(name);
    await page.getByLabel('Redirect URIs (one a line)').fill('https://app.example.test/callback');
    await page.getByLabel('Confidential (a server that keeps a client secret)').check();
    await page.getByRole('button', { name: 'Register app' }).click();
    await page.locator('#new-app-secret').waitFor();
    assert.equal(await text(page.locator('#new-app-title')), `App “${name}” registered`);
    const clientId = await page.locator('#new-app-client-id').inputValue();
    assert.match(clientId, /^app_\w+$/);
    assert.match(await page.locator('#new-app-secret').inputValue(), /^lcs_\w+$/);

    const row = page.locator(`tr[data-app="${clientId}"]`);
    await row.waitFor();
    const cells = await row.locator('td').allInnerTexts();
    assert.deepEqual(cells.slice(0, 6), [name, clientId, 'confidential', 'code + PKCE', 'https://app.example.test/callback', 'lattice:compute:inference'], safeJson(cells));
    assert.equal(await text(row.locator('[data-field=limits]')), 'No limits');

    await row.locator('summary').click();
    await row.getByLabel('Requests per minute').fill('20');
    await row.getByRole('button', { name: 'Save limits' }).click();
    await page.waitForFunction((id) => document.querySelector(`tr[data-app="${id}"] [data-field=limits]`)?.textContent === '20 requests/min', clientId);
    await reload('OAuth apps');
    assert.equal(await text(row.locator('[data-field=limits]')), '20 requests/min');

    // The console signed in as an app too: the person's grant to it is there.
    const consoleGrant = page.locator('#grants-list tr', { hasText: `${email} (this console)` }).first();
    assert.deepEqual((await consoleGrant.locator('td').allInnerTexts()).slice(1, 2), ['Lattice console']);
    assert.equal(await text(consoleGrant.locator('.badge')), 'active');

    await page.getByRole('button', { name: `Delete app ${name}` }).click();
    await row.waitFor({ state: 'detached' });
  });

  test('someone is invited, joins through the link, and is removed; another invitation is withdrawn', opts, async () => {
    await open('Members', '/console/members');
    const me = page.locator('#members-list tr', { hasText: `${email} (you)` });
    assert.equal(await me.getByRole('button').count(), 0, 'no Remove on your own row');

    const invitee = `invitee-${stamp}@example.test`;
    await page.getByLabel('E-mail').fill(invitee);
    await page.getByRole('button', { name: 'Invite', exact: true }).click();
    await page.locator('#invitation-link').waitFor();
    assert.equal(await text(page.locator('#new-invitation-title')), `Invitation for ${invitee}`);
    const link = await page.locator('#invitation-link').inputValue();
    assert.match(link, new RegExp(`^${origin.replace(/[.]/g, '\\.')}/account/invitations/inv_\\w+$`));
    const invitation = page.locator('#invitations-list tr', { hasText: invitee });
    assert.equal(await text(invitation.locator('[data-field=status]')), 'pending');

    // The invited person opens the link in their own browser, creates their account and joins.
    const theirs = await browser.newContext();
    try {
      const p = await theirs.newPage();
      await p.goto(link);
      await p.fill('#name', 'Invitee');
      await p.fill('#password', 'a long enough password');
      await p.click('#join');
      await p.getByText('You are now a member of').waitFor();
    } finally {
      await theirs.close();
    }

    await reload('Members');
    assert.equal(await text(invitation.locator('[data-field=status]')), 'accepted');
    const member = page.locator('#members-list tr', { hasText: invitee });
    assert.deepEqual((await member.locator('td').allInnerTexts()).slice(0, 2), [invitee, 'member']);
    await page.getByRole('button', { name: `Remove member ${invitee}` }).click();
    await member.waitFor({ state: 'detached' });

    const other = `withdrawn-${stamp}@example.test`;
    await page.getByLabel('E-mail').fill(other);
    await page.getByLabel('Role').selectOption('owner');
    await page.getByRole('button', { name: 'Invite', exact: true }).click();
    const otherRow = page.locator('#invitations-list tr', { hasText: other });
    await otherRow.waitFor();
    assert.deepEqual((await otherRow.locator('td').allInnerTexts()).slice(0, 2), [other, 'owner']);
    await page.getByRole('button', { name: `Revoke invitation for ${other}` }).click();
    await page.locator('#invitations-list tr', { hasText: other }).locator('.badge.revoked').waitFor();
  });

  test('a key gets limits on the Keys page, and the workspace its limits and a budget on that key', opts, async () => {
    await open('Keys', '/console/keys');
    keyName = `limited ${stamp}`;
    await page.getByLabel('Name').fill(keyName);
    await page.getByRole('button', { name: 'Create key' }).click();
    keySecret = await page.locator('#new-key-secret').inputValue();
    const row = page.locator('tr', { hasText: keyName });
    await row.waitFor();
    keyId = await row.getAttribute('data-key');
    await row.locator('summary').click();
    await row.getByLabel('Requests per minute').fill('60');
    await row.getByLabel('Tokens per minute').fill('100000');
    await row.getByRole('button', { name: 'Save limits' }).click();
    await page.waitForFunction((id) => document.querySelector(`tr[data-key="${id}"] [data-field=limits]`)?.textContent === '60 requests/min, 100,000 tokens/min', keyId);
    await reload('Keys');
    assert.equal(await text(page.locator(`tr[data-key="${keyId}"] [data-field=limits]`)), '60 requests/min, 100,000 tokens/min');

    await open('Limits and budgets', '/console/limits');
    const current = page.locator('#workspace-limits');
    await page.getByLabel('Requests at once').fill('1000');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.waitForFunction(() => document.querySelector('#workspace-limits')?.textContent === '1,000 at once');
    await reload('Limits and budgets');
    assert.equal(await text(current), '1,000 at once');
    // Cleared again: the other tests share the workspace.
    await page.getByLabel('Requests at once').fill('');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.waitForFunction(() => document.querySelector('#workspace-limits')?.textContent === 'No limits');

    await page.getByLabel('Applies to').selectOption('key');
    await page.getByLabel('Key or app').selectOption(keyId);
    await page.getByLabel('Amount (USD a month)').fill('5');
    await page.getByRole('button', { name: 'Set budget' }).click();
    const budget = page.locator('#budgets-list tr', { hasText: `Key ${keyName}` });
    await budget.waitFor();
    assert.equal(await text(budget.locator('[data-field=amount]')), '$5.00');
    assert.equal(await text(budget.locator('[data-field=spent]')), '$0.00');

    await budget.locator('summary').click();
    await budget.getByLabel('New amount (USD)').fill('7.5');
    await budget.getByRole('button', { name: 'Change', exact: true }).click();
    await page.waitForFunction((name) => [...document.querySelectorAll('#budgets-list tr')]
      .some((tr) => tr.textContent.includes(`Key ${name}`) && tr.querySelector('[data-field=amount]')?.textContent === '$7.50'), keyName);
    await reload('Limits and budgets');
    assert.equal(await text(budget.locator('[data-field=amount]')), '$7.50');
    await page.getByRole('button', { name: `Delete budget of Key ${keyName}` }).click();
    await budget.waitFor({ state: 'detached' });
  });

  test('a request made with the key is on this month’s invoice, which downloads as CSV', opts, async () => {
    assert.ok(keySecret, 'the key of the previous test');
    const completion = await client({ apiKey: keySecret }).chat.completions
      .create({ model: chatModel, messages: [{ role: 'user', content: 'for the invoice' }], max_tokens: 8 });
    assert.ok(completion.choices.length > 0, safeJson(completion));

    await open('Invoices', '/console/invoices');
    const month = new Date().toISOString().slice(0, 7);
    const first = page.locator('#invoices-list tbody tr').first();
    await first.waitFor();
    const cells = await first.locator('td').allInnerTexts();
    assert.equal(cells[0], month, safeJson(cells));
    assert.match(cells[1], /^in_\d{6}_[0-9a-f]{12}$/);
    assert.equal(cells[2], 'draft');
    await first.getByRole('link', { name: month }).click();
    await page.getByRole('heading', { level: 1, name: `Invoice ${month}` }).waitFor();
    assert.equal(new URL(page.url()).searchParams.get('id'), cells[1]);

    // The ledger records the request when it has flushed: look again until its line is there.
    const line = page.locator('tr', { hasText: chatModel });
    const deadline = Date.now() + 60_000;
    while ((await line.count()) === 0) {
      assert.ok(Date.now() < deadline, `the request on the invoice; the page says: ${await bodyText()}`);
      await reload(`Invoice ${month}`);
    }
    assert.equal(await text(page.locator('[data-field=status]')), 'draft (changes until the month is closed)');
    // The model is priced at $0.25 a request, and this is its only request: the line and the total say so.
    const lineCells = await line.locator('td').allInnerTexts();
    assert.deepEqual([...lineCells.slice(0, 3), lineCells[7]], [chatModel, 'chat.completions', '1', '$0.25'], safeJson(lineCells));
    assert.equal(await text(page.locator('dd[data-field=total]')), '$0.25');
    await page.getByRole('link', { name: 'All invoices' }).click();
    await page.getByRole('heading', { level: 1, name: 'Invoices' }).waitFor();
    assert.equal(await text(page.locator(`tr[data-invoice="${cells[1]}"] [data-field=total]`)), '$0.25');
    await first.getByRole('link', { name: month }).click();
    await page.getByRole('heading', { level: 1, name: `Invoice ${month}` }).waitFor();

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    assert.equal(download.suggestedFilename(), `${cells[1]}.csv`);
    const csv = await readFile(await download.path(), 'utf8');
    assert.ok(csv.startsWith('model,task,requests,input_tokens,cached_input_tokens,output_tokens,'), csv);
    assert.ok(csv.includes(`${chatModel},chat.completions,`), csv);
    assert.equal(await text(page.getByRole('status').filter({ hasText: 'Downloaded' })), `Downloaded ${cells[1]}.csv.`);
  });
});
