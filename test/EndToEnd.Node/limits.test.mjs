// Rate limits as the official openai SDK meets them: a 429 with retry-after, which the SDK waits out and retries
// on its own (its default retries, unmodified), and OpenAI's x-ratelimit-* headers on the answers.
//
// Needs LATTICE_ADMIN_KEY and LATTICE_WORKSPACE_ID (to make a limited key and a model held at the stand-in's gate)
// and LATTICE_STANDIN_URL; skipped without them.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { apiKey, baseURL, client, standInURL, TEST_TIMEOUT } from './support.mjs';

const adminKey = process.env.LATTICE_ADMIN_KEY || null;
const workspaceId = process.env.LATTICE_WORKSPACE_ID || null;
const root = baseURL.replace(/\/v1\/?$/, '');
const skip = !(adminKey && workspaceId && standInURL) && 'needs LATTICE_ADMIN_KEY, LATTICE_WORKSPACE_ID and LATTICE_STANDIN_URL';

async function admin(method, path, body) {
  const response = await fetch(root + path, {
    method,
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path} -> ${response.status} ${text}`);
  return JSON.parse(text);
}

async function heldCount(gate) {
  const response = await fetch(`${standInURL}/_standin/held?gate=${gate}`);
  return (await response.json()).waiting;
}

describe('rate limits', { skip }, () => {
  test('a 429 for too many requests in flight is waited out and retried by the SDK, which then succeeds', { timeout: TEST_TIMEOUT }, async () => {
    const gate = 'node' + randomUUID().replaceAll('-', '').slice(0, 12);
    const model = `lovelace:held-${gate}`;
    await admin('POST', '/admin/v1/models', {
      id: model,
      offers: [{ base_url: `${standInURL}/v1`, credential: 'standin', upstream_model: `standin-held-${gate}` }],
    });
    const key = await admin('POST', `/admin/v1/workspaces/${workspaceId}/keys`, { name: 'node limited', limits: { max_concurrent: 1 } });
    assert.deepEqual(key.limits, { requests_per_minute: null, tokens_per_minute: null, max_concurrent: 1 });

    // The first request holds the key's only slot until the stand-in's gate opens.
    const first = client({ apiKey: key.key }).chat.completions.create({ model, messages: [{ role: 'user', content: 'first' }] });
    while (await heldCount(gate) < 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }

    // The second goes through the SDK's own retries; a fetch that watches (and changes nothing) opens the gate
    // when it sees the refusal, so the slot is free by the time the SDK tries again.
    const seen = [];
    const watching = async (url, init) => {
      const response = await fetch(url, init);
      seen.push({ status: response.status, retryAfter: response.headers.get('retry-after'), at: performance.now() });
      if (response.status === 429 && seen.length === 1) {
        await fetch(`${standInURL}/_standin/release?gate=${gate}`, { method: 'POST' });
      }
      return response;
    };
    const second = await client({ apiKey: key.key, maxRetries: 3, fetch: watching }).chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: 'second' }],
    });

    assert.equal(second.choices[0].message.content, 'You said: second');
    assert.equal(seen[0].status, 429);
    assert.equal(seen[0].retryAfter, '1');
    assert.equal(seen.at(-1).status, 200);
    // The SDK waited at least as long as it was told before trying again.
    assert.ok(seen[1].at - seen[0].at >= 1000, `retried after ${seen[1].at - seen[0].at} ms`);
    assert.equal((await first).choices[0].message.content, 'You said: first');
  });

  test('answers to a limited key carry OpenAI\'s rate-limit headers, readable through withResponse()', { timeout: TEST_TIMEOUT }, async () => {
    const key = await admin('POST', `/admin/v1/workspaces/${workspaceId}/keys`, {
      name: 'node headers', limits: { requests_per_minute: 100, tokens_per_minute: 100000 },
    });
    const { data, response } = await client({ apiKey: key.key }).chat.completions
      .create({ model: 'lovelace:chat', messages: [{ role: 'user', content: 'hi' }], max_tokens: 100 })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'You said: hi');
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), '100');
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '99');
    assert.match(response.headers.get('x-ratelimit-reset-requests'), /^\d+(\.\d+)?m?s$/);
    assert.equal(response.headers.get('x-ratelimit-limit-tokens'), '100000');
    assert.ok(Number(response.headers.get('x-ratelimit-remaining-tokens')) < 100000 - 100);
  });

  test('the developer key without limits gets no rate-limit headers', { timeout: TEST_TIMEOUT }, async () => {
    const { response } = await client({ apiKey }).chat.completions
      .create({ model: 'lovelace:chat', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), null);
  });
});
