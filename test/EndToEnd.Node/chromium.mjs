// Debian's Chromium for the browser tests (identity.browser.mjs, console.browser.mjs, sample.browser.mjs), driven by playwright-core.
//   LATTICE_CHROMIUM  optional; the browser to drive (default /usr/bin/chromium, which .ci/run installs)

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const chromiumPath = process.env.LATTICE_CHROMIUM || '/usr/bin/chromium';

/** A headless browser with a new, empty profile of its own (removed on close), nothing fetched in the background. */
export async function launchChromium() {
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: install Debian's chromium (.ci/run does: apt-get install chromium)`);
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 60_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}
