// Shared helpers for the Node SDK end-to-end tests (not a test file itself).
//
// Environment (set by test/EndToEnd.Tests/NodeSdkTests.cs, which starts the stack):
//   LATTICE_BASE_URL     the gateway's OpenAI base URL, ending in /v1 (required)
//   LATTICE_API_KEY      a developer key for it (required)
//   LATTICE_STANDIN_URL  the stand-in upstream's root URL (optional; checks of what reached the upstream
//                        are skipped without it)

import { AssertionError } from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';

function required(name) {
  const value = process.env[name];
  if (!value) {
    // Never fall back to the SDK's defaults (OPENAI_BASE_URL / api.openai.com).
    throw new Error(`${name} is not set: run these tests through NodeSdkTests (dotnet test test/EndToEnd.Tests), `
      + 'or set LATTICE_BASE_URL and LATTICE_API_KEY to a running gateway.');
  }
  return value;
}

export const baseURL = required('LATTICE_BASE_URL');
export const apiKey = required('LATTICE_API_KEY');
export const standInURL = process.env.LATTICE_STANDIN_URL || null;

/** Per-test timeout for node:test, in ms. */
export const TEST_TIMEOUT = 30_000;

/**
 * The client exactly as a user builds it, plus no retries (a retry would hide a failed first attempt)
 * and a request timeout below TEST_TIMEOUT (so a hung request fails the test instead of hanging the file).
 */
export function client(overrides = {}) {
  return new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20_000, ...overrides });
}

/** Groq's client shape: the same gateway under /openai/v1. */
export function groqClient() {
  assertEndsWithV1(baseURL);
  return client({ baseURL: baseURL.replace(/\/v1\/?$/, '/openai/v1') });
}

function assertEndsWithV1(url) {
  if (!/\/v1\/?$/.test(url)) {
    throw new Error(`LATTICE_BASE_URL should end in /v1, got ${url}`);
  }
}

/**
 * JS re-implementation of the stand-in's StandInEmbeddings.Vector(text, dims):
 * block 0 = SHA-256(UTF-8 of text), block k = SHA-256(block k-1); each block gives eight little-endian
 * uint32 u mapped to u / 4294967295 * 2 - 1; the first dims values are L2-normalised in double and
 * stored as float32. Returns the float32 values as JS numbers.
 */
export function standInVector(text, dims = 8) {
  const raw = new Array(dims);
  let block = createHash('sha256').update(Buffer.from(text, 'utf8')).digest();
  let i = 0;
  for (;;) {
    for (let k = 0; k < 8 && i < dims; k++, i++) {
      const u = block.readUInt32LE(k * 4);
      raw[i] = u / 4294967295 * 2.0 - 1.0;
    }
    if (i >= dims) {
      break;
    }
    block = createHash('sha256').update(block).digest();
  }
  let sumSquares = 0;
  for (const d of raw) {
    sumSquares += d * d;
  }
  const norm = Math.sqrt(sumSquares);
  return raw.map((d) => (norm > 0 ? Math.fround(d / norm) : 0));
}

/** Decodes an OpenAI base64 embedding (little-endian float32) into JS numbers. */
export function decodeBase64Floats(base64) {
  const buf = Buffer.from(base64, 'base64');
  if (buf.length % 4 !== 0) {
    throw new Error(`base64 embedding has ${buf.length} bytes, not a multiple of 4`);
  }
  const out = [];
  for (let o = 0; o < buf.length; o += 4) {
    out.push(buf.readFloatLE(o));
  }
  return out;
}

/** A small valid WAV file: 16 kHz mono 16-bit PCM, 0.1 s of a 440 Hz tone. */
export function smallWav() {
  const sampleRate = 16_000;
  const samples = 1_600;
  const data = Buffer.alloc(samples * 2);
  for (let n = 0; n < samples; n++) {
    data.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 440 * n) / sampleRate) * 8_000), n * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(sampleRate, 24);
  header.writeUInt32LE(sampleRate * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

export function sha256Hex(buffer) {
  return createHash('sha256').update(buffer).digest('hex');
}

/** The last request the stand-in upstream received on a path (its /_standin/last endpoint). */
export async function standInLast(path) {
  const response = await fetch(`${standInURL}/_standin/last?path=${encodeURIComponent(path)}`, {
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) {
    throw new Error(`stand-in /_standin/last?path=${path}: ${response.status} ${await response.text()}`);
  }
  return response.json();
}

/** Awaits a promise that must reject and returns the rejection; fails if it resolves. */
export async function rejection(promise) {
  let value;
  try {
    value = await promise;
  } catch (err) {
    return err;
  }
  throw new AssertionError({ message: `expected a rejection, got ${safeJson(value)}` });
}

export function safeJson(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** Describes an SDK error for assertion messages. */
export function describeError(err) {
  if (!(err instanceof Error)) {
    return safeJson(err);
  }
  const fields = { status: err.status, code: err.code, type: err.type, param: err.param, error: err.error };
  return `${err.constructor.name}: ${err.message} ${safeJson(fields)}${err.cause ? ` cause: ${err.cause}` : ''}`;
}
