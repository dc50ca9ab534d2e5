// Chat completions through the gateway with the official openai SDK: plain, streamed (with and without
// usage), the SDK's stream helper, tool calls, incremental delivery, and Groq's /openai/v1 client shape.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { client, groqClient, safeJson, TEST_TIMEOUT } from './support.mjs';

const opts = { timeout: TEST_TIMEOUT };

describe('chat completions', () => {
  test('non-streaming reply is "You said: " + the last user message', opts, async () => {
    const completion = await client().chat.completions.create({
      model: 'lovelace:chat',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'first question' },
        { role: 'assistant', content: 'first answer' },
        { role: 'user', content: 'Hello from Node' },
      ],
    });

    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, 'lovelace:chat', 'the answer names the model the client asked for, not the upstream name');
    assert.equal(completion.choices.length, 1);
    const [choice] = completion.choices;
    assert.equal(choice.index, 0);
    assert.equal(choice.message.role, 'assistant');
    assert.equal(choice.message.content, 'You said: Hello from Node');
    assert.equal(choice.finish_reason, 'stop');
    // prompt = words of all message texts: 2 + 2 + 2 + 3; completion = "You said: Hello from Node" = 5.
    assert.deepEqual(
      { prompt: completion.usage.prompt_tokens, completion: completion.usage.completion_tokens, total: completion.usage.total_tokens },
      { prompt: 9, completion: 5, total: 14 },
    );
  });

  test('content parts are accepted', opts, async () => {
    const completion = await client().chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'parts ' }, { type: 'text', text: 'joined' }] }],
    });
    assert.equal(completion.choices[0].message.content, 'You said: parts joined');
  });

  test('streaming without include_usage: deltas concatenate exactly and no chunk carries usage', opts, async () => {
    const stream = await client().chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: 'stream me please' }],
      stream: true,
    });

    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
    }

    assert.ok(chunks.length >= 3, `expected a role chunk, content chunks and a finish chunk, got ${safeJson(chunks)}`);
    for (const chunk of chunks) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.model, 'lovelace:chat');
      assert.ok(!('usage' in chunk), `no chunk may carry usage without include_usage, got ${safeJson(chunk)}`);
      assert.equal(chunk.choices.length, 1, `every chunk has one choice, got ${safeJson(chunk)}`);
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const text = chunks.map((c) => c.choices[0].delta.content ?? '').join('');
    assert.equal(text, 'You said: stream me please');
    const contentChunks = chunks.filter((c) => c.choices[0].delta.content);
    assert.ok(contentChunks.length > 1, 'the reply arrives in several deltas');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'all chunks share one id');
  });

  test('streaming with stream_options.include_usage: last chunk has no choices and the usage', opts, async () => {
    const stream = await client().chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: 'count my words' }],
      stream: true,
      stream_options: { include_usage: true },
    });

    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
    }

    const last = chunks.at(-1);
    assert.deepEqual(last.choices, [], `the usage chunk has empty choices, got ${safeJson(last)}`);
    // prompt "count my words" = 3 words; completion "You said: count my words" = 5.
    assert.equal(last.usage.prompt_tokens, 3);
    assert.equal(last.usage.completion_tokens, 5);
    assert.equal(last.usage.total_tokens, 8);
    for (const chunk of chunks.slice(0, -1)) {
      assert.equal(chunk.usage ?? null, null, `only the last chunk carries usage, got ${safeJson(chunk)}`);
      assert.equal(chunk.choices.length, 1);
    }
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.equal(text, 'You said: count my words');
  });

  test("the SDK's stream helper assembles the final completion", opts, async () => {
    const runner = client().chat.completions.stream({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: 'helper path' }],
    });
    const deltas = [];
    runner.on('content', (delta) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.content, 'You said: helper path');
    assert.equal(final.choices[0].finish_reason, 'stop');
    assert.equal(deltas.join(''), 'You said: helper path');
  });

  test('streamed deltas arrive as they are produced (not buffered)', opts, async () => {
    // The stand-in's "drip" model pauses 300 ms before every content chunk: "You said: one two three four
    // five six" is 8 chunks, nominally ~2.1 s from the first to the last. A gateway that buffers the stream
    // delivers them together (spread ~0); the threshold leaves room for a loaded machine's scheduling stalls.
    const stream = await client().chat.completions.create({
      model: 'lovelace:drip',
      messages: [{ role: 'user', content: 'one two three four five six' }],
      stream: true,
    });
    const arrivals = [];
    let text = '';
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) {
        arrivals.push(performance.now());
        text += content;
      }
    }
    assert.equal(text, 'You said: one two three four five six');
    assert.equal(arrivals.length, 8);
    const gaps = arrivals.slice(1).map((t, i) => Math.round(t - arrivals[i]));
    const spread = arrivals.at(-1) - arrivals[0];
    assert.ok(spread >= 500, `content chunks should arrive ~300 ms apart; gaps were ${JSON.stringify(gaps)} ms`);
  });
});

describe('tool calls', () => {
  const tools = [
    {
      type: 'function',
      function: {
        name: 'lookup_weather',
        description: 'Weather for a city.',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    },
    {
      type: 'function',
      function: { name: 'other_tool', parameters: { type: 'object', properties: {} } },
    },
  ];

  test('forced function: tool_calls carry the name and arguments', opts, async () => {
    const completion = await client().chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: 'weather in Paris' }],
      tools,
      tool_choice: { type: 'function', function: { name: 'lookup_weather' } },
    });

    const [choice] = completion.choices;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls.length, 1);
    const [call] = choice.message.tool_calls;
    assert.equal(call.type, 'function');
    assert.equal(call.id, 'call_standin_1');
    assert.equal(call.function.name, 'lookup_weather');
    assert.equal(call.function.arguments, '{"echo":"weather in Paris"}');
    assert.deepEqual(JSON.parse(call.function.arguments), { echo: 'weather in Paris' });
  });

  test('streamed tool call: argument fragments assemble to the arguments', opts, async () => {
    const stream = await client().chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: 'say "hi" ünïcode' }],
      tools,
      tool_choice: { type: 'function', function: { name: 'other_tool' } },
      stream: true,
    });

    let name = '';
    let args = '';
    let id = null;
    let finish = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      for (const call of choice?.delta.tool_calls ?? []) {
        assert.equal(call.index, 0);
        id ??= call.id ?? null;
        name += call.function?.name ?? '';
        args += call.function?.arguments ?? '';
      }
      finish = choice?.finish_reason ?? finish;
    }
    assert.equal(id, 'call_standin_1');
    assert.equal(name, 'other_tool');
    assert.deepEqual(JSON.parse(args), { echo: 'say "hi" ünïcode' });
    assert.equal(finish, 'tool_calls');
  });
});

describe("Groq's client shape (/openai/v1)", () => {
  test('a client on /openai/v1 completes a chat', opts, async () => {
    const groq = groqClient();
    assert.match(groq.baseURL, /\/openai\/v1$/);
    const completion = await groq.chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: 'via groq path' }],
    });
    assert.equal(completion.choices[0].message.content, 'You said: via groq path');
  });

  test('a client on /openai/v1 streams a chat', opts, async () => {
    const stream = await groqClient().chat.completions.create({
      model: 'lovelace:chat',
      messages: [{ role: 'user', content: 'groq stream' }],
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
    }
    assert.equal(text, 'You said: groq stream');
  });
});
