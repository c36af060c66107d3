// The live dashboard in headless Chromium: the page draws the stream's chart and redraws it as batches
// complete (two screenshots differ), it listens on 127.0.0.1 only, and a wrong or missing token is refused.
import * as fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser } from "playwright-core";
import { SparkContext, StreamingContext, type Dashboard } from "../engine/index.js";

let browser: Browser;

beforeAll(async () => {
  if (!fs.existsSync("/usr/bin/chromium")) throw new Error("apt-get install -y chromium (Debian's Chromium; never `playwright install`)");
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
});

describe("stream.dashboard() and ssc.dashboard()", () => {
  it("serves the stream's chart on loopback, redraws it as batches complete, and refuses a wrong token", async () => {
    const ssc = new StreamingContext(new SparkContext(), 1000, { clock: "manual" });
    const batches: [string, number][][] = [
      [["apples", 3], ["pears", 1]],
      [["apples", 9], ["pears", 2], ["plums", 7]],
      [["apples", 1], ["pears", 12], ["plums", 4]],
    ];
    const counts = ssc.queueStream(batches);
    counts.chart({ mark: "bar" }, { mode: "complete", title: "fruit" });
    ssc.start();
    await ssc.advance(1000);
    let dashboard: Dashboard | undefined;
    const page = await browser.newPage({ viewport: { width: 800, height: 500 } });
    try {
      dashboard = await ssc.dashboard({ minIntervalMs: 50 });
      expect(dashboard.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{48}$/);
      expect((dashboard as unknown as { server: { address(): { address: string } } }).server.address().address).toBe("127.0.0.1");

      // Wrong and missing tokens are refused, for the page and for its data.
      const base = `http://127.0.0.1:${dashboard.port}`;
      expect((await fetch(`${base}/?token=${"0".repeat(48)}`)).status).toBe(403);
      expect((await fetch(`${base}/`)).status).toBe(403);
      expect((await fetch(`${base}/charts.json?token=nope`)).status).toBe(403);
      const refused = await page.goto(`${base}/?token=wrong`);
      expect(refused?.status()).toBe(403);

      const opened = await page.goto(dashboard.url);
      expect(opened?.status()).toBe(200);
      const bars = () => page.locator("#chart-0 svg path[aria-roledescription='bar'], #chart-0 svg .mark-rect path").count();
      await page.waitForSelector("#chart-0 svg", { timeout: 20_000 });
      await expect.poll(bars, { timeout: 10_000 }).toBe(2);
      const first = await page.locator("#chart-0").screenshot();

      await ssc.advance(1000);
      await page.waitForFunction(() => document.getElementById("chart-0")?.dataset.batches === "2", undefined, { timeout: 10_000 });
      await expect.poll(bars, { timeout: 10_000 }).toBe(3);
      const second = await page.locator("#chart-0").screenshot();
      expect(Buffer.compare(first, second)).not.toBe(0);
      expect(await page.locator("#chart-0 h2").textContent()).toBe("fruit");
    } finally {
      await page.close();
      await dashboard?.close();
      await ssc.stop();
    }
  }, 60_000);

  it("stream.dashboard() of a stream without a chart draws a default chart of it", async () => {
    const ssc = new StreamingContext(new SparkContext(), 1000, { clock: "manual" });
    const counts = ssc.queueStream([[["a", 1]], [["a", 2], ["b", 5]]] as [string, number][][]);
    const dashboard = await counts.dashboard();
    ssc.start();
    try {
      await ssc.advance(2000);
      await new Promise((r) => setTimeout(r, 400));
      const charts = (await (await fetch(`http://127.0.0.1:${dashboard.port}/charts.json?token=${dashboard.token}`)).json()) as {
        spec: { data: { values: { key: string; value: number }[] } };
        batches: number;
      }[];
      expect(charts).toHaveLength(1);
      expect(charts[0]!.batches).toBe(2);
      expect(charts[0]!.spec.data.values.map((r) => [r.key, r.value])).toEqual([["a", 1], ["a", 2], ["b", 5]]);
    } finally {
      await dashboard.close();
      await ssc.stop();
    }
  }, 30_000);
});
