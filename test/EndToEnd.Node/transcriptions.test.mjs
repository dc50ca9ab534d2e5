// Audio transcriptions through the gateway with the official openai SDK, uploading a small WAV built in
// memory with the SDK's toFile, in every response_format. When LATTICE_STANDIN_URL is set, the upload the
// stand-in upstream received is checked byte for byte (sha256, length, filename, content type).
// The tests in this file run one after another, so "the last transcription request" is always ours.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { toFile } from 'openai';
import { client, sha256Hex, smallWav, standInLast, standInURL, TEST_TIMEOUT } from './support.mjs';

const opts = { timeout: TEST_TIMEOUT };
const wav = smallWav();
const TEXT = 'Hello from the stand-in.';

async function transcribe(params) {
  const file = await toFile(wav, 'hello.wav', { type: 'audio/wav' });
  return client().audio.transcriptions.create({ model: 'lovelace:whisper', file, ...params });
}

async function assertUploadRelayed(t) {
  if (!standInURL) {
    t.diagnostic('LATTICE_STANDIN_URL not set: upload not checked at the upstream');
    return;
  }
  const last = await standInLast('/v1/audio/transcriptions');
  assert.ok(last.upload, `the stand-in recorded no upload: ${JSON.stringify(last)}`);
  assert.deepEqual(
    {
      field: last.upload.field,
      filename: last.upload.filename,
      content_type: last.upload.content_type,
      length: last.upload.length,
      sha256: last.upload.sha256,
    },
    { field: 'file', filename: 'hello.wav', content_type: 'audio/wav', length: wav.length, sha256: sha256Hex(wav) },
  );
  const body = Buffer.from(last.body_base64, 'base64').toString('latin1');
  assert.ok(body.includes('standin-whisper'), 'the upstream request names the upstream model');
  assert.ok(!body.includes('lovelace:whisper'), 'the gateway model id is not sent upstream');
}

describe('audio transcriptions', () => {
  test('json (default)', opts, async (t) => {
    const result = await transcribe({});
    assert.equal(result.text, TEXT);
    assert.deepEqual(result.usage, { type: 'duration', seconds: 2 });
    await assertUploadRelayed(t);
  });

  test('json (explicit)', opts, async (t) => {
    const result = await transcribe({ response_format: 'json' });
    assert.equal(result.text, TEXT);
    await assertUploadRelayed(t);
  });

  test('text', opts, async (t) => {
    const result = await transcribe({ response_format: 'text' });
    assert.equal(typeof result, 'string');
    assert.equal(result, TEXT + '\n');
    await assertUploadRelayed(t);
  });

  test('srt', opts, async (t) => {
    const result = await transcribe({ response_format: 'srt' });
    assert.equal(
      result,
      '1\n00:00:00,000 --> 00:00:01,000\nHello from\n\n2\n00:00:01,000 --> 00:00:02,000\nthe stand-in.\n\n',
    );
    await assertUploadRelayed(t);
  });

  test('vtt', opts, async (t) => {
    const result = await transcribe({ response_format: 'vtt' });
    assert.equal(
      result,
      'WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nHello from\n\n00:00:01.000 --> 00:00:02.000\nthe stand-in.\n\n',
    );
    await assertUploadRelayed(t);
  });

  test('verbose_json with language and word timestamps', opts, async (t) => {
    const result = await transcribe({
      response_format: 'verbose_json',
      language: 'en',
      timestamp_granularities: ['word', 'segment'],
    });
    assert.equal(result.task, 'transcribe');
    assert.equal(result.language, 'en');
    assert.equal(result.duration, 2);
    assert.equal(result.text, TEXT);
    assert.equal(result.segments.length, 2);
    assert.deepEqual(result.segments.map((s) => [s.id, s.start, s.end, s.text]), [
      [0, 0, 1, ' Hello from'],
      [1, 1, 2, ' the stand-in.'],
    ]);
    assert.deepEqual(result.words.map((w) => w.word), ['Hello', 'from', 'the', 'stand-in.']);
    await assertUploadRelayed(t);
  });

  test('verbose_json without options', opts, async () => {
    const result = await transcribe({ response_format: 'verbose_json' });
    assert.equal(result.language, 'english');
    assert.equal(result.text, TEXT);
    assert.equal(result.words, undefined);
  });
});
