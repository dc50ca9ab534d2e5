// The gateway's model catalogue through the official openai SDK: list (auto-paginating iterator and the
// page itself) and retrieve of ids containing ':'.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { client, groqClient, safeJson, TEST_TIMEOUT } from './support.mjs';

const opts = { timeout: TEST_TIMEOUT };
const REGISTERED = ['lovelace:chat', 'lovelace:embed', 'lovelace:whisper', 'lovelace:drop', 'lovelace:drip'];

describe('models', () => {
  test('list contains every registered model', opts, async () => {
    const ids = [];
    for await (const model of client().models.list()) {
      assert.equal(model.object, 'model', safeJson(model));
      assert.equal(typeof model.created, 'number', safeJson(model));
      assert.equal(typeof model.owned_by, 'string', safeJson(model));
      ids.push(model.id);
    }
    for (const id of REGISTERED) {
      assert.ok(ids.includes(id), `${id} missing from ${safeJson(ids)}`);
    }
    assert.equal(new Set(ids).size, ids.length, `ids are unique: ${safeJson(ids)}`);
  });

  test('list page is an OpenAI list object', opts, async () => {
    const page = await client().models.list();
    assert.ok(Array.isArray(page.data));
    assert.equal(page.hasNextPage(), false);
    const chat = page.data.find((m) => m.id === 'lovelace:chat');
    assert.ok(chat, safeJson(page.data));
    assert.equal(chat.owned_by, 'e2e');
  });

  test('retrieve "lovelace:chat" (id with a colon)', opts, async () => {
    const model = await client().models.retrieve('lovelace:chat');
    assert.equal(model.id, 'lovelace:chat');
    assert.equal(model.object, 'model');
    assert.equal(model.owned_by, 'e2e');
    assert.equal(typeof model.created, 'number');
    assert.ok(model.created > 1_600_000_000, `created is unix seconds, got ${model.created}`);
  });

  test('retrieve through the Groq path /openai/v1', opts, async () => {
    const model = await groqClient().models.retrieve('lovelace:embed');
    assert.equal(model.id, 'lovelace:embed');
  });
});
