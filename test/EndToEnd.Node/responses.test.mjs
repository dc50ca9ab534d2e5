// The Responses API through the gateway with the official openai SDK: create, stream (raw events and the stream
// helper's finalResponse), a function-calling round trip, previous_response_id with retrieve / input items / delete,
// and a refusal naming the field. The gateway translates to the stand-in's chat completions ("You said: …", words
// as tokens).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { client, safeJson, TEST_TIMEOUT } from './support.mjs';

const opts = { timeout: TEST_TIMEOUT };
const model = 'lovelace:chat';

describe('responses', () => {
  test('create: a Response object whose output_text is the answer', opts, async () => {
    const response = await client().responses.create({ model, input: 'hello there', instructions: 'Be brief.' });

    assert.equal(response.object, 'response');
    assert.match(response.id, /^resp_/);
    assert.equal(response.status, 'completed');
    assert.equal(response.model, model);
    assert.equal(response.instructions, 'Be brief.');
    assert.equal(response.output_text, 'You said: hello there');
    assert.equal(response.output.length, 1);
    assert.equal(response.output[0].type, 'message');
    assert.deepEqual(response.output[0].content, [{ type: 'output_text', annotations: [], logprobs: [], text: 'You said: hello there' }]);
    // input = "Be brief." + "hello there" = 4 words; output = 4 words.
    assert.deepEqual(
      { input: response.usage.input_tokens, output: response.usage.output_tokens, total: response.usage.total_tokens },
      { input: 4, output: 4, total: 8 },
    );
  });

  test('stream: the event grammar in order, sequence numbers from 0, ending with response.completed', opts, async () => {
    const stream = await client().responses.create({ model, input: 'hello there', stream: true });
    const events = [];
    for await (const event of stream) {
      events.push(event);
    }

    assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
    assert.deepEqual(events.map((e) => e.type), [
      'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
      'response.output_text.delta', 'response.output_text.delta', 'response.output_text.delta', 'response.output_text.delta',
      'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed',
    ], safeJson(events));
    const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta);
    assert.equal(deltas.join(''), 'You said: hello there');
    const completed = events.at(-1).response;
    assert.equal(completed.status, 'completed');
    assert.equal(completed.output[0].content[0].text, 'You said: hello there');
    assert.equal(completed.usage.output_tokens, 4);
  });

  test('stream helper: text deltas as they arrive, and the final response', opts, async () => {
    const stream = client().responses.stream({ model, input: 'stream me please' });
    let text = '';
    stream.on('response.output_text.delta', (event) => {
      text += event.delta;
    });
    const final = await stream.finalResponse();

    assert.equal(text, 'You said: stream me please');
    assert.equal(final.status, 'completed');
    assert.equal(final.output_text, 'You said: stream me please');
    assert.equal(final.usage.input_tokens, 3);
  });

  test('function calling: a function_call item, then its output answered', opts, async () => {
    const tools = [{
      type: 'function',
      name: 'get_weather',
      description: 'Current weather',
      parameters: { type: 'object', properties: { echo: { type: 'string' } }, required: ['echo'] },
      strict: false,
    }];
    const input = [{ role: 'user', content: 'weather in Paris' }];
    const first = await client().responses.create({ model, input, tools, tool_choice: 'required' });

    assert.equal(first.output.length, 1, safeJson(first.output));
    const [call] = first.output;
    assert.equal(call.type, 'function_call');
    assert.equal(call.name, 'get_weather');
    assert.equal(call.call_id, 'call_standin_1');
    assert.deepEqual(JSON.parse(call.arguments), { echo: 'weather in Paris' });
    assert.equal(first.tools[0].name, 'get_weather');

    const second = await client().responses.create({
      model,
      tools,
      input: [...input, call, { type: 'function_call_output', call_id: call.call_id, output: '18C and sunny' }],
    });
    assert.equal(second.output_text, 'You said: weather in Paris');
  });

  test('previous_response_id continues a kept response; retrieve, input items and delete', opts, async () => {
    const api = client();
    const first = await api.responses.create({ model, input: 'remember this' });
    const second = await api.responses.create({ model, input: 'and now?', previous_response_id: first.id });

    assert.equal(second.previous_response_id, first.id);
    assert.equal(second.output_text, 'You said: and now?');
    // The whole conversation counts: "remember this" + "You said: remember this" + "and now?".
    assert.equal(second.usage.input_tokens, 2 + 4 + 2);

    const retrieved = await api.responses.retrieve(first.id);
    assert.equal(retrieved.id, first.id);
    assert.equal(retrieved.output_text, 'You said: remember this');

    const items = [];
    for await (const item of api.responses.inputItems.list(second.id, { order: 'asc' })) {
      items.push(item);
    }
    assert.deepEqual(items.map((i) => i.type ?? 'message'), ['message', 'message', 'message']);
    assert.equal(items[1].content[0].text, 'You said: remember this');

    await api.responses.delete(first.id);
    await assert.rejects(api.responses.retrieve(first.id), (error) => error instanceof OpenAI.NotFoundError);
  });

  test('a built-in tool is refused with a 400 naming the field', opts, async () => {
    await assert.rejects(
      client().responses.create({ model, input: 'hi', tools: [{ type: 'web_search' }] }),
      (error) => {
        assert.ok(error instanceof OpenAI.BadRequestError, String(error));
        assert.equal(error.status, 400);
        assert.equal(error.param, 'tools[0].type');
        assert.equal(error.code, 'invalid_value');
        return true;
      },
    );
  });
});
