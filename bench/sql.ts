// Benchmark (not a test): SQL over a running stream's state against the same question asked with RDD
// methods, and the PostgreSQL and DuckDB sinks against each database's own bulk path, side by side.
// Run: npm run bench:sql (starts a private PostgreSQL on 127.0.0.1; without one the PostgreSQL ratio is 0.00x)
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SparkContext, SparkSession, StreamingContext, saveToDuckDB, saveToPostgres } from "../engine/index.js";
import { DuckDB, duckdbApi } from "../engine/sql/duckdb.js";
import { copyRows } from "../engine/sql/sinks.js";
import { PostgresTestServer, postgresAvailable } from "../test/support/postgres.js";

const STATE_KEYS = 1_000_000;
const QUERY_ROUNDS = 5;
const SINK_BATCHES = 4;
const PG_ROWS_PER_BATCH = 50_000;
const DUCK_ROWS_PER_BATCH = 125_000;

interface Order {
  id: number;
  customer: string;
  amount: number;
  note: string;
}

function orders(batch: number, n: number): Order[] {
  const out: Order[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const id = batch * n + i;
    out[i] = { id, customer: `c${id % 997}`, amount: (id % 1000) + 0.5, note: id % 7 === 0 ? "it's; fine" : "ok" };
  }
  return out;
}

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const ms = (x: number) => `${x.toFixed(1)} ms`;
const rate = (rows: number, t: number) => `${((rows / t) * 1000 / 1e6).toFixed(3)} M rows/s`;

async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function queryLatency(spark: SparkSession): Promise<{ ratio: number }> {
  const ssc = new StreamingContext(spark.sparkContext, 1000, { clock: "manual" });
  const keys: [string, number][] = [];
  for (let i = 0; i < STATE_KEYS; i++) keys.push([`k${i}`, (i * 7919) % 1_000_003]);
  const counts = ssc.queueStream([keys], true).updateStateByKey((vs: number[], s?: number) => (vs.length ? vs[vs.length - 1] : s));
  counts.createOrReplaceTempView("counts");
  ssc.start();
  await ssc.advance(1000);
  const query = "select key, value from counts order by value desc limit 10";
  let sqlTop: unknown[] = [];
  const cold = await timed(async () => (sqlTop = (await spark.sql(query)).collect()));
  const sqlTimes: number[] = [];
  const rddTimes: number[] = [];
  let rddTop: [string, number][] = [];
  for (let r = 0; r < QUERY_ROUNDS; r++) {
    rddTimes.push(await timed(() => (rddTop = counts.state().sortBy((kv) => kv[1], false).take(10))));
    sqlTimes.push(await timed(async () => (sqlTop = (await spark.sql(query)).collect())));
  }
  await ssc.stop();
  const same = JSON.stringify(sqlTop) === JSON.stringify(rddTop.map(([key, value]) => ({ key, value })));
  const sql = median(sqlTimes);
  const rdd = median(rddTimes);
  console.log(`query latency: "${query}" over ${STATE_KEYS.toLocaleString("en")} keys of updateStateByKey state (median of ${QUERY_ROUNDS}, same answer: ${same})`);
  console.log(`  RDD sortBy(value, false).take(10)   ${ms(rdd)}`);
  console.log(`  spark.sql, view already loaded      ${ms(sql)}   ${(rdd / sql).toFixed(2)}x faster than the RDD`);
  console.log(`  spark.sql, first after a batch      ${ms(cold)}   (loads the state into DuckDB: ${(rdd / cold).toFixed(2)}x the RDD's speed)`);
  return { ratio: rdd / sql };
}

async function postgresSink(): Promise<number> {
  if (!postgresAvailable()) {
    console.log("postgres sink: PostgreSQL is not installed (apt-get install postgresql); skipped");
    return 0;
  }
  const pg = await PostgresTestServer.start();
  try {
    const { Client } = require("pg") as typeof import("pg");
    const copyFrom = (require("pg-copy-streams") as typeof import("pg-copy-streams")).from;
    const batches = Array.from({ length: SINK_BATCHES }, (_, b) => orders(b, PG_ROWS_PER_BATCH));
    const total = SINK_BATCHES * PG_ROWS_PER_BATCH;
    const columns = ["id", "customer", "amount", "note", "batch_time"];
    const client = new Client(pg.url);
    await client.connect();
    await client.query("CREATE TABLE peer (id bigint, customer text, amount double precision, note text, batch_time bigint)");
    // Each side once before measuring, so connection set-up and table creation are not timed.
    const ssc = new StreamingContext(new SparkContext(), 1000, { clock: "manual" });
    const queue = [orders(99, 10), ...batches];
    saveToPostgres(ssc.queueStream(queue), { connection: pg.url, table: "orders" });
    ssc.start();
    await ssc.advance(1000);
    const sinkTimes: number[] = [];
    const peerTimes: number[] = [];
    for (let b = 0; b < SINK_BATCHES; b++) {
      sinkTimes.push(await timed(() => ssc.advance(1000)));
      const rows = batches[b] as unknown as Record<string, string | number>[];
      peerTimes.push(
        await timed(async () => {
          await client.query("BEGIN");
          await copyRows(client as never, copyFrom as never, "peer", columns, rows, { column: "batch_time", value: (b + 2) * 1000 });
          await client.query("COMMIT");
        }),
      );
    }
    await ssc.stop();
    const n = (await client.query("SELECT count(*)::int AS n FROM orders")).rows[0].n as number;
    await client.end();
    const sink = sinkTimes.reduce((a, b) => a + b, 0);
    const peer = peerTimes.reduce((a, b) => a + b, 0);
    console.log(`postgres sink: ${SINK_BATCHES} batches x ${PG_ROWS_PER_BATCH.toLocaleString("en")} rows (${n.toLocaleString("en")} rows in the table)`);
    console.log(`  pg COPY in a transaction (peer)     ${rate(total, peer)}`);
    console.log(`  saveToPostgres                      ${rate(total, sink)}   ${(peer / sink).toFixed(2)}x the peer (goal >= 0.8x)`);
    return peer / sink;
  } finally {
    await pg.stop();
  }
}

async function duckdbSink(dir: string): Promise<number> {
  const batches = Array.from({ length: SINK_BATCHES }, (_, b) => orders(b, DUCK_ROWS_PER_BATCH));
  const total = SINK_BATCHES * DUCK_ROWS_PER_BATCH;
  const ssc = new StreamingContext(new SparkContext(), 1000, { clock: "manual" });
  const file = path.join(dir, "bench.duckdb");
  saveToDuckDB(ssc.queueStream([orders(99, 10), ...batches]), { path: file, table: "orders" });
  ssc.start();
  await ssc.advance(1000);
  const d = duckdbApi();
  const db = await d.DuckDBInstance.create(path.join(dir, "peer.duckdb"));
  const conn = await db.connect();
  await conn.run("CREATE TABLE peer (id BIGINT, customer VARCHAR, amount DOUBLE, note VARCHAR, batch_time BIGINT)");
  const sinkTimes: number[] = [];
  const peerTimes: number[] = [];
  for (let b = 0; b < SINK_BATCHES; b++) {
    sinkTimes.push(await timed(() => ssc.advance(1000)));
    const rows = batches[b] as Order[];
    const time = BigInt((b + 2) * 1000);
    peerTimes.push(
      await timed(async () => {
        // DuckDB's appender as its documentation shows it: one append call per value, endRow per row.
        await conn.run("BEGIN TRANSACTION");
        const appender = await conn.createAppender("peer");
        for (const o of rows) {
          appender.appendBigInt(BigInt(o.id));
          appender.appendVarchar(o.customer);
          appender.appendDouble(o.amount);
          appender.appendVarchar(o.note);
          appender.appendBigInt(time);
          appender.endRow();
        }
        appender.closeSync();
        await conn.run("COMMIT");
      }),
    );
  }
  await ssc.stop();
  conn.closeSync();
  db.closeSync();
  const check = await DuckDB.open(file);
  const n = (await check.query("SELECT count(*) AS n FROM orders")).rows[0]?.n;
  check.close();
  const sink = sinkTimes.reduce((a, b) => a + b, 0);
  const peer = peerTimes.reduce((a, b) => a + b, 0);
  console.log(`duckdb sink: ${SINK_BATCHES} batches x ${DUCK_ROWS_PER_BATCH.toLocaleString("en")} rows into a file database (${Number(n).toLocaleString("en")} rows in the table)`);
  console.log(`  DuckDB appender, per value (peer)   ${rate(total, peer)}`);
  console.log(`  saveToDuckDB                        ${rate(total, sink)}   ${(peer / sink).toFixed(2)}x the peer (goal >= 0.8x)`);
  return peer / sink;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-bench-sql-"));
  const spark = SparkSession.builder().appName("bench-sql").getOrCreate();
  try {
    const { ratio } = await queryLatency(spark);
    const postgres = await postgresSink();
    const duckdb = await duckdbSink(dir);
    console.log(`summary: sql-vs-rdd ${ratio.toFixed(2)}x, postgres ${postgres.toFixed(2)}x, duckdb ${duckdb.toFixed(2)}x`);
  } finally {
    spark.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
