// Debian's Chromium for the browser tests, driven by playwright-core: headless, no sandbox, and
// none of the background traffic a fresh profile makes. Under CI=true a missing browser fails.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const executablePath = '/usr/bin/chromium';
export const available = existsSync(executablePath);
/** For `test(…, { skip })`. */
export const browserSkip: string | false = available ? false : 'chromium is not installed';
if (!available && process.env.CI) throw new Error(`${executablePath} is missing: CI must install Debian's chromium package`);

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
