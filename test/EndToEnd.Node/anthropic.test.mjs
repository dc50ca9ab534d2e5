// The gateway's Anthropic Messages surface as the unmodified official @anthropic-ai/sdk meets it: create, stream,
// a tool round trip, count_tokens, models.list, and the gateway's errors as the SDK's own error classes.
//
// The SDK's base URL is the gateway's root (it adds /v1/messages itself). The 429 case needs LATTICE_ADMIN_KEY and
// LATTICE_WORKSPACE_ID (to make a key limited to one request a minute) and is skipped without them.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { apiKey, baseURL, describeError, rejection, standInURL, standInLast, TEST_TIMEOUT } from './support.mjs';

const opts = { timeout: TEST_TIMEOUT };
const root = baseURL.replace(/\/v1\/?$/, '');
const adminKey = process.env.LATTICE_ADMIN_KEY || null;
const workspaceId = process.env.LATTICE_WORKSPACE_ID || null;

/** The client exactly as a user builds it, pointed at the gateway; no retries, so a failed first attempt shows. */
function anthropic(overrides = {}) {
  return new Anthropic({ baseURL: root, apiKey, maxRetries: 0, timeout: 20_000, ...overrides });
}

const weather = {
  name: 'get_weather',
  description: 'Current weather',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

describe('anthropic sdk', () => {
  test('messages.create answers with a Message', opts, async () => {
    const message = await anthropic().messages.create({
      model: 'lovelace:chat',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hello there' }],
    });
    assert.match(message.id, /^msg_/);
    assert.equal(message.type, 'message');
    assert.equal(message.role, 'assistant');
    assert.equal(message.model, 'lovelace:chat');
    assert.deepEqual(message.content, [{ type: 'text', text: 'You said: hello there' }]);
    assert.equal(message.stop_reason, 'end_turn');
    assert.equal(message.stop_sequence, null);
    assert.equal(message.usage.input_tokens, 2);
    assert.equal(message.usage.output_tokens, 4);
  });

  test('messages.stream gives the text piece by piece and the final Message', opts, async () => {
    const pieces = [];
    const stream = anthropic().messages.stream({
      model: 'lovelace:chat',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hello there' }],
    });
    stream.on('text', (text) => pieces.push(text));
    const message = await stream.finalMessage();
    assert.deepEqual(pieces, ['You', ' said:', ' hello', ' there']);
    assert.deepEqual(message.content, [{ type: 'text', text: 'You said: hello there' }]);
    assert.equal(message.stop_reason, 'end_turn');
    assert.equal(message.usage.output_tokens, 4);
  });

  test('a max_tokens stop is stop_reason max_tokens', opts, async () => {
    const message = await anthropic().messages.create({
      model: 'lovelace:chat',
      max_tokens: 2,
      messages: [{ role: 'user', content: 'hello there' }],
    });
    assert.deepEqual(message.content, [{ type: 'text', text: 'You said:' }]);
    assert.equal(message.stop_reason, 'max_tokens');
  });

  test('a tool round trip: tool_use, then a tool_result answered in text', opts, async () => {
    const client = anthropic();
    const question = { role: 'user', content: 'weather in Paris' };
    const first = await client.messages.create({
      model: 'lovelace:chat',
      max_tokens: 100,
      messages: [question],
      tools: [weather],
      tool_choice: { type: 'any' },
    });
    assert.equal(first.stop_reason, 'tool_use');
    assert.equal(first.content.length, 1);
    const use = first.content[0];
    assert.equal(use.type, 'tool_use');
    assert.match(use.id, /^toolu_/);
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { echo: 'weather in Paris' });

    const second = await client.messages.create({
      model: 'lovelace:chat',
      max_tokens: 100,
      messages: [
        question,
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '18C and sunny' }] },
      ],
      tools: [weather],
    });
    assert.equal(second.stop_reason, 'end_turn');
    assert.deepEqual(second.content, [{ type: 'text', text: 'You said: weather in Paris' }]);
    if (standInURL) {
      const last = await standInLast('/v1/chat/completions');
      const sent = JSON.parse(Buffer.from(last.body_base64, 'base64').toString('utf8'));
      assert.deepEqual(sent.messages.slice(1), [
        { role: 'assistant', content: null, tool_calls: [{ id: use.id, type: 'function', function: { name: 'get_weather', arguments: '{"echo":"weather in Paris"}' } }] },
        { role: 'tool', tool_call_id: use.id, content: '18C and sunny' },
      ]);
    }
  });

  test('a streamed tool call arrives as input_json_delta and is parsed into the final Message', opts, async () => {
    const stream = anthropic().messages.stream({
      model: 'lovelace:chat',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'weather in Rome' }],
      tools: [weather],
      tool_choice: { type: 'tool', name: 'get_weather' },
    });
    const partials = [];
    stream.on('inputJson', (partial) => partials.push(partial));
    const message = await stream.finalMessage();
    assert.ok(partials.length > 0, 'no input_json_delta reached the SDK');
    assert.equal(message.stop_reason, 'tool_use');
    assert.equal(message.content[0].type, 'tool_use');
    assert.deepEqual(message.content[0].input, { echo: 'weather in Rome' });
  });

  test('messages.countTokens counts the prompt as the gateway estimates it', opts, async () => {
    const count = await anthropic().messages.countTokens({
      model: 'lovelace:chat',
      system: 'be brief',
      messages: [{ role: 'user', content: 'hello there' }],
    });
    // 3 + "system" 1 + "be brief" 2, 3 + "user" 1 + "hello there" 2, and the reply's 3 (o200k_base).
    assert.deepEqual(count, { input_tokens: 15 });
  });

  test('models.list pages through Anthropic\'s list shape; models.retrieve gives one model', opts, async () => {
    const client = anthropic();
    const ids = [];
    for await (const model of client.models.list({ limit: 2 })) {
      assert.equal(model.type, 'model');
      assert.equal(model.display_name, model.id);
      assert.match(model.created_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
      ids.push(model.id);
    }
    assert.ok(ids.includes('lovelace:chat'), ids.join(', '));
    assert.equal(new Set(ids).size, ids.length, `a model listed twice: ${ids.join(', ')}`);

    const chat = await client.models.retrieve('lovelace:chat');
    assert.equal(chat.id, 'lovelace:chat');
    assert.equal(chat.type, 'model');
  });

  test('a request the chat targets cannot carry -> Anthropic.BadRequestError naming the field', opts, async () => {
    const err = await rejection(anthropic().messages.create({
      model: 'lovelace:chat',
      max_tokens: 100,
      messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/bmp', data: 'Qk0=' } }] }],
    }));
    assert.ok(err instanceof Anthropic.BadRequestError, describeError(err));
    assert.equal(err.status, 400);
    assert.equal(err.type, 'invalid_request_error', describeError(err));
    assert.equal(err.error.error.message, "messages.0.content.0.source.media_type: must be one of 'image/jpeg', 'image/png', 'image/gif', 'image/webp'.");
    assert.match(err.requestID, /\S/);
  });

  test('a wrong key -> Anthropic.AuthenticationError', opts, async () => {
    const err = await rejection(anthropic({ apiKey: 'lattice-not-a-real-key' }).messages.create({
      model: 'lovelace:chat',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hi' }],
    }));
    assert.ok(err instanceof Anthropic.AuthenticationError, describeError(err));
    assert.equal(err.status, 401);
    assert.equal(err.type, 'authentication_error', describeError(err));
  });

  test('an unknown model -> Anthropic.NotFoundError, on create, countTokens and models.retrieve', opts, async () => {
    const client = anthropic();
    for (const call of [
      () => client.messages.create({ model: 'lovelace:no-such-model', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }),
      () => client.messages.countTokens({ model: 'lovelace:no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
      () => client.models.retrieve('lovelace:no-such-model'),
    ]) {
      const err = await rejection(call());
      assert.ok(err instanceof Anthropic.NotFoundError, describeError(err));
      assert.equal(err.type, 'not_found_error', describeError(err));
    }
  });

  test('a key over its requests-per-minute limit -> Anthropic.RateLimitError with retry-after',
    { ...opts, skip: !(adminKey && workspaceId) && 'needs LATTICE_ADMIN_KEY and LATTICE_WORKSPACE_ID' }, async () => {
      const response = await fetch(`${root}/admin/v1/workspaces/${workspaceId}/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'node anthropic limited', limits: { requests_per_minute: 1 } }),
      });
      const text = await response.text();
      assert.ok(response.ok, `${response.status} ${text}`);
      const client = anthropic({ apiKey: JSON.parse(text).key });
      const request = { model: 'lovelace:chat', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };

      const { response: first } = await client.messages.create(request).withResponse();
      assert.equal(first.headers.get('anthropic-ratelimit-requests-limit'), '1');
      assert.equal(first.headers.get('anthropic-ratelimit-requests-remaining'), '0');

      const err = await rejection(client.messages.create(request));
      assert.ok(err instanceof Anthropic.RateLimitError, describeError(err));
      assert.equal(err.status, 429);
      assert.equal(err.type, 'rate_limit_error', describeError(err));
      assert.match(err.headers.get('retry-after'), /^\d+$/);
    });
});
