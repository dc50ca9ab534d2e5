// The gateway's errors as the official openai SDK surfaces them: the SDK maps the HTTP status to its own
// error classes and exposes the OpenAI envelope's code/param/type; a stream that breaks mid-way must make
// iteration reject with an APIError rather than end silently.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { client, describeError, rejection, TEST_TIMEOUT } from './support.mjs';

const opts = { timeout: TEST_TIMEOUT };

describe('errors', () => {
  test('wrong API key -> OpenAI.AuthenticationError (401, invalid_api_key)', opts, async () => {
    const bad = client({ apiKey: 'lattice-not-a-real-key' });
    const err = await rejection(bad.chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: 'hi' }],
    }));
    assert.ok(err instanceof OpenAI.AuthenticationError, describeError(err));
    assert.equal(err.status, 401, describeError(err));
    assert.equal(err.code, 'invalid_api_key', describeError(err));
    assert.equal(typeof err.error?.message, 'string', describeError(err));
  });

  test('wrong API key on models.list -> OpenAI.AuthenticationError', opts, async () => {
    const bad = client({ apiKey: 'lattice-not-a-real-key' });
    const err = await rejection(bad.models.list());
    assert.ok(err instanceof OpenAI.AuthenticationError, describeError(err));
    assert.equal(err.code, 'invalid_api_key', describeError(err));
  });

  test('unknown model -> OpenAI.NotFoundError (404, model_not_found)', opts, async () => {
    const err = await rejection(client().chat.completions.create({
      model: 'lovelace:no-such-model',
      messages: [{ role: 'user', content: 'hi' }],
    }));
    assert.ok(err instanceof OpenAI.NotFoundError, describeError(err));
    assert.equal(err.status, 404, describeError(err));
    assert.equal(err.code, 'model_not_found', describeError(err));
    assert.equal(err.error.code, 'model_not_found', describeError(err));
  });

  test('unknown model on a stream request -> OpenAI.NotFoundError before any chunk', opts, async () => {
    const err = await rejection(client().chat.completions.create({
      model: 'lovelace:no-such-model',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    }));
    assert.ok(err instanceof OpenAI.NotFoundError, describeError(err));
    assert.equal(err.code, 'model_not_found', describeError(err));
  });

  test('models.retrieve of an unknown id -> OpenAI.NotFoundError', opts, async () => {
    const err = await rejection(client().models.retrieve('lovelace:no-such-model'));
    assert.ok(err instanceof OpenAI.NotFoundError, describeError(err));
    assert.equal(err.code, 'model_not_found', describeError(err));
  });

  test('unknown role -> OpenAI.BadRequestError (400, param messages[0].role)', opts, async () => {
    const err = await rejection(client().chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'wizard', content: 'hi' }],
    }));
    assert.ok(err instanceof OpenAI.BadRequestError, describeError(err));
    assert.equal(err.status, 400, describeError(err));
    assert.equal(err.type, 'invalid_request_error', describeError(err));
    assert.equal(err.param, 'messages[0].role', describeError(err));
  });

  test('stream broken mid-way (lovelace:drop) -> iteration rejects with OpenAI.APIError after the first delta', opts, async () => {
    const stream = await client().chat.completions.create({
      model: 'lovelace:drop',
      messages: [{ role: 'user', content: 'this will break' }],
      stream: true,
    });

    let text = '';
    let chunks = 0;
    const err = await rejection((async () => {
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0]?.delta.content ?? '';
      }
      return `the stream ended silently after ${chunks} chunks (text ${JSON.stringify(text)})`;
    })());

    assert.ok(err instanceof OpenAI.APIError, describeError(err));
    assert.ok(!(err instanceof OpenAI.APIConnectionError), `an error event, not a dropped connection: ${describeError(err)}`);
    assert.equal(err.code, 'upstream_error', describeError(err));
    assert.equal(text, 'You', 'the chunks before the break are delivered');
  });

  test('non-streaming request whose upstream drops -> OpenAI.InternalServerError (5xx)', opts, async () => {
    const err = await rejection(client().chat.completions.create({
      model: 'lovelace:drop',
      messages: [{ role: 'user', content: 'this will break' }],
    }));
    assert.ok(err instanceof OpenAI.InternalServerError, describeError(err));
    assert.ok(err.status >= 500, describeError(err));
    assert.equal(typeof err.error?.message, 'string', describeError(err));
  });
});
