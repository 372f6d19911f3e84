import * as fs from 'node:fs';

/** Debian's chromium (scripts/ensure-chromium.sh installs it), driven by playwright-core (a pinned devDependency). */
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu'];

/**
 * The part of playwright-core's API the tests use, typed here so the build
 * does not depend on the package (a machine without it skips those tests).
 */
export interface Route {
  request(): { url(): string };
  continue(): Promise<void>;
  abort(): Promise<void>;
}
export interface Page {
  on(event: 'dialog', fn: (d: { message(): string; dismiss(): Promise<void> }) => void): void;
  on(event: 'pageerror', fn: (e: Error) => void): void;
  goto(url: string): Promise<{ status(): number } | null>;
  url(): string;
  waitForSelector(selector: string, opts?: { timeout?: number }): Promise<unknown>;
  /** a browser-side expression (the tests compile without the DOM types) */
  evaluate<T>(expression: string): Promise<T>;
  screenshot(opts: { path: string; fullPage?: boolean }): Promise<unknown>;
}
export interface BrowserContext {
  route(pattern: string, handler: (route: Route) => unknown): Promise<void>;
  newPage(): Promise<Page>;
  close(): Promise<void>;
}
export interface Browser {
  newContext(opts?: { viewport?: { width: number; height: number } }): Promise<BrowserContext>;
  close(): Promise<void>;
}
export interface Chromium {
  launch(opts: { executablePath: string; args: string[] }): Promise<Browser>;
}

/**
 * playwright-core's chromium launcher, or why there is none. Under CI a
 * missing browser is an error (a skipped browser test must not pass as green);
 * elsewhere the test is skipped with the reason.
 */
export function browserOrSkipReason(): { chromium: Chromium } | { skip: string } {
  let chromium: Chromium;
  try {
    chromium = (require('playwright-core') as { chromium: Chromium }).chromium;
  } catch {
    return missing('playwright-core is not installed (npm ci)');
  }
  if (!fs.existsSync(CHROMIUM)) return missing(`${CHROMIUM} is missing (bash scripts/ensure-chromium.sh)`);
  return { chromium };
}

function missing(reason: string): { skip: string } {
  if (process.env.CI) throw new Error(`browser tests need a browser under CI: ${reason}`);
  return { skip: reason };
}
