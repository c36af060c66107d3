// Every SQL sink under SIGKILL: a real program (test/fixtures/sql-sinks.js) writes orders to Parquet
// folders, DuckDB and a real PostgreSQL, and running totals upserted by key; it is killed at 10 points and
// restarted with getOrCreate each time. Afterwards every table and folder holds each batch exactly once.
// The notes carry quotes and semicolons: they must arrive as data.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SparkSession } from "../engine/index.js";
import { buildEngine } from "./fixtures/recovery-build.js";

/** The program runs on a private copy of the built engine (npm test builds dist/ first), else a private build. */
function privateEngine(into: string): string {
  const built = path.resolve(__dirname, "..", "dist");
  if (!fs.existsSync(path.join(built, "engine", "sql", "index.js"))) return buildEngine(into);
  const copy = path.join(into, "dist");
  fs.cpSync(path.join(built, "engine"), path.join(copy, "engine"), { recursive: true });
  return copy;
}
import { killRepeatedly, mulberry32, runOnce } from "./fixtures/recovery-harness.js";
import { PostgresTestServer } from "./support/postgres.js";

const FIXTURE = path.resolve(__dirname, "fixtures", "sql-sinks.js");
const BATCHES = 30;
const DELAY_MS = 40;
const KILLS = 10;
const NOTES = ["plain", "it's; DROP TABLE orders; --", 'say "hi"', "a,b\nc", "'); DELETE FROM totals; --", "back\\slash"];

interface Order {
  id: number;
  customer: string;
  cents: number;
  note: string;
}

let work: string;
let dist: string;
let pg: PostgresTestServer;
const expected = new Map<number, Order[]>();

function stage(dir: string): void {
  const rng = mulberry32(11);
  fs.mkdirSync(dir, { recursive: true });
  let id = 0;
  for (let k = 1; k <= BATCHES; k++) {
    const orders: Order[] = [];
    const n = 1 + Math.floor(rng() * 6);
    for (let i = 0; i < n; i++) {
      orders.push({ id: ++id, customer: `c${Math.floor(rng() * 5)}`, cents: 100 + Math.floor(rng() * 900), note: NOTES[Math.floor(rng() * NOTES.length)]!.replace("\n", " ") });
    }
    expected.set(k * 1000, orders);
    fs.writeFileSync(path.join(dir, `input-${String(k).padStart(4, "0")}.txt`), orders.map((o) => `${o.id}\t${o.customer}\t${o.cents}\t${o.note}`).join("\n"));
  }
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-sinks-"));
  [dist, pg] = await Promise.all([Promise.resolve().then(() => privateEngine(work)), PostgresTestServer.start()]);
}, 120_000);

afterAll(async () => {
  await pg?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe("SQL sinks killed and recovered", () => {
  it(`Parquet, DuckDB and PostgreSQL hold each batch exactly once after ${KILLS} SIGKILLs`, async () => {
    const [ckpt, staging, input, out] = ["ckpt", "staging", "input", "out"].map((d) => path.join(work, d)) as [string, string, string, string];
    stage(staging);
    fs.mkdirSync(input, { recursive: true });
    fs.mkdirSync(out, { recursive: true });
    const args = [FIXTURE, ckpt, staging, input, out, String(BATCHES), String(DELAY_MS), pg.url];
    const log = await killRepeatedly(args, dist, { kills: KILLS, batches: BATCHES, delayMs: DELAY_MS, seed: 5 });
    if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
    const last = await runOnce(args, dist, undefined);
    expect(last.stderr).toBe("");
    expect(last.lines.at(-1)).toBe("DONE");
    expect(log.filter((l) => l.includes("-> recovered")).length).toBeGreaterThanOrEqual(5);

    const all = [...expected.values()].flat();
    const byTime = (rows: Record<string, unknown>[]) => {
      const m = new Map<number, Order[]>();
      for (const r of rows) {
        const t = Number(r.batch_time);
        const list = m.get(t) ?? [];
        list.push({ id: Number(r.id), customer: String(r.customer), cents: Number(r.cents), note: String(r.note) });
        m.set(t, list);
      }
      for (const list of m.values()) list.sort((a, b) => a.id - b.id);
      return m;
    };
    const totals = new Map<string, number>();
    for (const o of all) totals.set(o.customer, (totals.get(o.customer) ?? 0) + o.cents);
    const expectedTotals = [...totals].sort().map(([customer, cents]) => ({ customer, cents }));

    // PostgreSQL, through the pg client.
    const { Client } = require("pg") as typeof import("pg");
    const client = new Client(pg.url);
    await client.connect();
    try {
      const orders = (await client.query("SELECT id, customer, cents, note, batch_time FROM orders ORDER BY id")).rows;
      expect(orders.length).toBe(all.length);
      expect(byTime(orders)).toEqual(expected);
      const t = (await client.query("SELECT customer, cents FROM totals ORDER BY customer")).rows.map((r) => ({ customer: r.customer, cents: Number(r.cents) }));
      expect(t).toEqual(expectedTotals);
    } finally {
      await client.end();
    }

    // DuckDB's file and the Parquet folders, through a SparkSession.
    const spark = SparkSession.builder().getOrCreate();
    try {
      await spark.sql(`ATTACH '${path.join(out, "sink.duckdb")}' AS sink (READ_ONLY)`);
      const duckOrders = (await spark.sql("SELECT id, customer, cents, note, batch_time FROM sink.orders ORDER BY id")).collect();
      expect(duckOrders.length).toBe(all.length);
      expect(byTime(duckOrders)).toEqual(expected);
      expect((await spark.sql("SELECT customer, cents FROM sink.totals ORDER BY customer")).collect()).toEqual(expectedTotals);
      await spark.sql("DETACH sink");
      for (const [time, orders] of expected) {
        const folder = path.join(out, `orders-${time}`);
        const rows = (await spark.read.parquet(folder)).collect().sort((a, b) => Number(a.id) - Number(b.id));
        expect(rows).toEqual(orders);
      }
      const folders = fs.readdirSync(out).filter((f) => f.startsWith("orders-"));
      expect(folders.length).toBe(BATCHES);
    } finally {
      spark.stop();
    }
  }, 300_000);
});
