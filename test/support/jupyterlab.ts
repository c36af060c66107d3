// Test support: the JupyterLab 4 front end in test/jupyterlab (installed and built by its setup.js, which
// .ci/run runs once and which is a no-op while the build is current), and Debian's Chromium to drive it.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { REPO, requireFile, TestEnvironmentError, tempDir } from "./notebook-server.js";

export const LAB_DIR = path.join(REPO, "test", "jupyterlab");

/** Installs and builds the front end if its inputs changed (minutes the first time, instant after). */
export function ensureLabFrontend(timeoutMs = 15 * 60_000): void {
  const r = spawnSync(process.execPath, [path.join(LAB_DIR, "setup.js")], { encoding: "utf8", timeout: timeoutMs });
  if (r.status !== 0) {
    throw new TestEnvironmentError(`test/jupyterlab/setup.js failed (exit ${r.status ?? r.signal}); run it by hand to see why:\n${r.stdout}\n${r.stderr}`);
  }
}

/** A module from the front end's own node_modules (vega-lite 5, as JupyterLab draws with it). */
export function labRequire<T>(id: string): T {
  const dir = path.join(LAB_DIR, "node_modules");
  if (!fs.existsSync(dir)) ensureLabFrontend();
  return require(require.resolve(id, { paths: [LAB_DIR] })) as T;
}

export interface Chromium {
  context: BrowserContext;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

/** Debian's Chromium, headless, with a fresh profile; the flags keep it off this machine's closed network. */
export async function launchChromium(): Promise<Chromium> {
  requireFile("/usr/bin/chromium", "apt-get install -y chromium (Debian's Chromium; never `playwright install`)");
  const profile = tempDir("chromium-profile");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
