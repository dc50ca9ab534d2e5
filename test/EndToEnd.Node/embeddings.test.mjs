// Embeddings through the gateway with the official openai SDK. The SDK requests base64 by default and
// decodes it to floats itself; explicit 'float' and 'base64' are returned as sent. Every value must equal
// the stand-in's deterministic vector (re-implemented in support.mjs) exactly, as float32.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { client, decodeBase64Floats, standInVector, TEST_TIMEOUT } from './support.mjs';

const opts = { timeout: TEST_TIMEOUT };

/** Compares as float32: JSON floats print the shortest round-trip form, which fround maps back exactly. */
function assertVector(actual, text, dims, label) {
  assert.ok(Array.isArray(actual), `${label}: embedding should be an array of numbers, got ${typeof actual}`);
  assert.equal(actual.length, dims, `${label}: length`);
  const expected = standInVector(text, dims);
  assert.deepEqual(actual.map((v) => Math.fround(v)), expected, `${label}: values of ${JSON.stringify(text)}`);
  const norm = Math.sqrt(actual.reduce((s, v) => s + v * v, 0));
  assert.ok(Math.abs(norm - 1) < 1e-5, `${label}: unit length, got ${norm}`);
}

describe('embeddings', () => {
  test("the JS vector formula agrees with the stand-in's definition on a known input", () => {
    // Sanity of the re-implementation itself: normalised, deterministic, dims honoured across hash blocks.
    const v = standInVector('hello', 20);
    assert.equal(v.length, 20);
    assert.deepEqual(standInVector('hello', 20), v);
    assert.deepEqual(standInVector('hello', 8).length, 8);
    assert.notDeepEqual(standInVector('hello', 8), standInVector('hello!', 8));
  });

  test('default request (SDK asks for base64 and decodes it): float values equal the stand-in vector', opts, async () => {
    const response = await client().embeddings.create({ model: 'lovelace:embed', input: 'The quick brown fox' });

    assert.equal(response.object, 'list');
    assert.equal(response.model, 'lovelace:embed');
    assert.equal(response.data.length, 1);
    assert.equal(response.data[0].object, 'embedding');
    assert.equal(response.data[0].index, 0);
    assertVector(response.data[0].embedding, 'The quick brown fox', 8, 'default/base64-decoded');
    assert.equal(response.usage.prompt_tokens, 4);
    assert.equal(response.usage.total_tokens, 4);
  });

  test("encoding_format 'float': arrays of numbers, several inputs, dimensions", opts, async () => {
    const inputs = ['alpha beta', 'gamma', 'ünïcödé ✓'];
    const response = await client().embeddings.create({
      model: 'lovelace:embed',
      input: inputs,
      encoding_format: 'float',
      dimensions: 20,
    });

    assert.equal(response.data.length, inputs.length);
    response.data.forEach((item, i) => {
      assert.equal(item.index, i);
      assertVector(item.embedding, inputs[i], 20, `float[${i}]`);
    });
    assert.equal(response.usage.prompt_tokens, 5, 'usage counts the words of all inputs (2 + 1 + 2)');
  });

  test("encoding_format 'base64': the SDK returns the string as sent; it decodes to the stand-in vector", opts, async () => {
    const response = await client().embeddings.create({
      model: 'lovelace:embed',
      input: ['one', 'two three'],
      encoding_format: 'base64',
    });

    assert.equal(response.data.length, 2);
    response.data.forEach((item, i) => {
      assert.equal(typeof item.embedding, 'string', 'explicit base64 is not decoded by the SDK');
      const floats = decodeBase64Floats(item.embedding);
      assertVector(floats, ['one', 'two three'][i], 8, `base64[${i}]`);
    });
  });

  test('token-array input is hashed as its compact JSON', opts, async () => {
    const response = await client().embeddings.create({
      model: 'lovelace:embed',
      input: [[1, 2, 3], [42]],
      encoding_format: 'float',
    });
    assert.equal(response.data.length, 2);
    assertVector(response.data[0].embedding, '[1,2,3]', 8, 'tokens[0]');
    assertVector(response.data[1].embedding, '[42]', 8, 'tokens[1]');
    assert.equal(response.usage.prompt_tokens, 4);
  });
});
