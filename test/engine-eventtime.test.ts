// Event time with watermarks on DStreams, as Structured Streaming's guide ("Handling Late Data and
// Watermarking") describes it: its worked example as tables of batches in and rows out for each output
// mode, late records counted in listener events, out-of-order input within the delay giving the same
// result, and the watermark and window state recovered exactly from a checkpoint.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Minutes, SparkContext, StreamingContext, setPresenter, type BatchInfo, type ChartRow, type EventWindowOutputMode, type EventWindowRow } from "../engine/index.js";
import { checkpoint, checkpointerOf } from "../engine/checkpoint/index.js";

interface WordEvent {
  timestamp: number;
  word: string;
}

/** "12:07" as ms of event time. */
const at = (hhmm: string): number => {
  const [h, m] = hhmm.split(":").map(Number) as [number, number];
  return (h * 60 + m) * 60_000;
};
const hm = (ms: number): string => `${String(Math.floor(ms / 3_600_000)).padStart(2, "0")}:${String((ms / 60_000) % 60).padStart(2, "0")}`;
const ev = (time: string, word: string): WordEvent => ({ timestamp: at(time), word });

/** The guide's example: words with event times, arriving in five-minute triggers (one batch each). */
const GUIDE: WordEvent[][] = [
  [ev("12:07", "dog"), ev("12:08", "owl")],
  [ev("12:14", "dog"), ev("12:09", "cat")],
  [ev("12:15", "cat"), ev("12:08", "dog"), ev("12:13", "owl"), ev("12:21", "owl")],
  [ev("12:17", "owl"), ev("12:04", "donkey")],
  [ev("12:33", "cat")],
  [],
];

const fmtRow = (r: EventWindowRow<string, number>) => `${hm(r.window.start)}-${hm(r.window.end)} ${r.key} ${r.value}`;

async function runGuide(mode: EventWindowOutputMode, batches: WordEvent[][] = GUIDE) {
  const sc = new SparkContext();
  const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
  const events = ssc.queueStream(batches.map((b) => b.slice()));
  const counts = events.withWatermark((e) => e.timestamp, Minutes(10)).countByEventWindow((e) => e.word, Minutes(10), Minutes(5), { outputMode: mode });
  const out: string[][] = [];
  counts.foreachRDD((rdd) => void out.push(rdd.collect().map(fmtRow).sort()));
  const infos: BatchInfo[] = [];
  ssc.addStreamingListener({ onBatchCompleted: (e) => void infos.push(e.batchInfo) });
  await ssc.start();
  for (let i = 0; i < batches.length; i++) await ssc.advance(1000);
  await ssc.stop();
  if (ssc.lastError) throw ssc.lastError;
  return { out, infos, counts };
}

describe("the guide's worked example (10-minute windows sliding every 5 minutes, 10 minutes of delay)", () => {
  it("update mode: each batch emits the windows it changed; the too-late (12:04, donkey) is dropped and counted", async () => {
    const { out, infos, counts } = await runGuide("update");
    expect(out).toEqual([
      ["12:00-12:10 dog 1", "12:00-12:10 owl 1", "12:05-12:15 dog 1", "12:05-12:15 owl 1"],
      ["12:00-12:10 cat 1", "12:05-12:15 cat 1", "12:05-12:15 dog 2", "12:10-12:20 dog 1"],
      // (12:08, dog) and (12:13, owl) are late but within the watermark (12:04): counted.
      ["12:00-12:10 dog 2", "12:05-12:15 dog 3", "12:05-12:15 owl 2", "12:10-12:20 cat 1", "12:10-12:20 owl 1", "12:15-12:25 cat 1", "12:15-12:25 owl 1", "12:20-12:30 owl 1"],
      // Watermark 12:11: (12:04, donkey) is too late; the window 12:00-12:10 is evicted.
      ["12:10-12:20 owl 2", "12:15-12:25 owl 2"],
      ["12:25-12:35 cat 1", "12:30-12:40 cat 1"],
      [],
    ]);
    const progress = infos.map((i) => Object.values(i.eventTime ?? {})[0]);
    expect(progress.map((p) => (p?.watermark === undefined ? "none" : hm(p.watermark)))).toEqual(["none", "11:58", "12:04", "12:11", "12:11", "12:23"]);
    expect(progress.map((p) => p?.numRowsDroppedByWatermark)).toEqual([0, 0, 0, 1, 0, 0]);
    expect(progress.map((p) => p?.numWindowsEvicted)).toEqual([0, 0, 0, 1, 0, 2]);
    expect(counts.numRowsDroppedByWatermark).toBe(1);
    expect(hm(counts.watermark as number)).toBe("12:23");
    // State is bounded: only windows the watermark has not passed are kept.
    expect(counts.state().collect().map(([[start]]) => hm(start))).toEqual(["12:15", "12:15", "12:20", "12:25", "12:30"]);
  });

  it("append mode: each window once, with its final counts, when the watermark passes its end", async () => {
    const { out } = await runGuide("append");
    expect(out).toEqual([
      [],
      [],
      [],
      ["12:00-12:10 cat 1", "12:00-12:10 dog 2", "12:00-12:10 owl 1"],
      [],
      ["12:05-12:15 cat 1", "12:05-12:15 dog 3", "12:05-12:15 owl 2", "12:10-12:20 cat 1", "12:10-12:20 dog 1", "12:10-12:20 owl 2"],
    ]);
  });

  it("complete mode: every window each batch; as in Spark, complete mode keeps all state and drops nothing", async () => {
    const { out, infos } = await runGuide("complete");
    const b3 = ["12:00-12:10 cat 1", "12:00-12:10 dog 2", "12:00-12:10 owl 1", "12:05-12:15 cat 1", "12:05-12:15 dog 3", "12:05-12:15 owl 2", "12:10-12:20 cat 1", "12:10-12:20 dog 1", "12:10-12:20 owl 1", "12:15-12:25 cat 1", "12:15-12:25 owl 1", "12:20-12:30 owl 1"];
    const b4 = ["11:55-12:05 donkey 1", "12:00-12:10 cat 1", "12:00-12:10 dog 2", "12:00-12:10 donkey 1", "12:00-12:10 owl 1", "12:05-12:15 cat 1", "12:05-12:15 dog 3", "12:05-12:15 owl 2", "12:10-12:20 cat 1", "12:10-12:20 dog 1", "12:10-12:20 owl 2", "12:15-12:25 cat 1", "12:15-12:25 owl 2", "12:20-12:30 owl 1"];
    const b5 = [...b4, "12:25-12:35 cat 1", "12:30-12:40 cat 1"].sort();
    expect(out).toEqual([
      ["12:00-12:10 dog 1", "12:00-12:10 owl 1", "12:05-12:15 dog 1", "12:05-12:15 owl 1"],
      ["12:00-12:10 cat 1", "12:00-12:10 dog 1", "12:00-12:10 owl 1", "12:05-12:15 cat 1", "12:05-12:15 dog 2", "12:05-12:15 owl 1", "12:10-12:20 dog 1"],
      b3,
      b4,
      b5,
      b5,
    ]);
    expect(infos.map((i) => Object.values(i.eventTime ?? {})[0]?.numRowsDroppedByWatermark)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it("reduceByKeyAndEventWindow, the general form, on pairs", async () => {
    const sc = new SparkContext();
    const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
    const sales = ssc.queueStream([
      [[at("12:01"), ["apples", 3]], [at("12:06"), ["pears", 1]]],
      [[at("12:12"), ["apples", 2]], [at("11:59"), ["apples", 100]]],
    ] as [number, [string, number]][][]);
    const out: string[][] = [];
    const byKey = sales.map(([t, [k, v]]) => [k, { t, v }] as [string, { t: number; v: number }]);
    byKey
      .withWatermark(([, x]) => new Date(x.t), Minutes(5))
      .reduceByKeyAndEventWindow((a, b) => ({ t: Math.max(a.t, b.t), v: a.v + b.v }), Minutes(10))
      .foreachRDD((rdd) => void out.push(rdd.collect().map((r) => `${hm(r.window.start)}-${hm(r.window.end)} ${r.key} ${r.value.v}`).sort()));
    await ssc.start();
    await ssc.advance(2000);
    await ssc.stop();
    // Tumbling windows (slide = window); (11:59, apples) is older than the watermark 12:01 and dropped.
    expect(out).toEqual([["12:00-12:10 apples 3", "12:00-12:10 pears 1"], ["12:10-12:20 apples 2"]]);
  });
});

describe("charts", () => {
  it("a chart of an event-window stream puts the window on the x axis and drops evicted windows", async () => {
    const charts: { spec: Record<string, unknown>; batches: ChartRow[][] }[] = [];
    setPresenter({
      openPrint: () => ({ batch: () => {} }),
      openChart: (spec) => {
        const c = { spec, batches: [] as ChartRow[][] };
        charts.push(c);
        return { batch: (_t, rows) => void c.batches.push(rows) };
      },
      outputDefined: () => {},
    });
    try {
      const sc = new SparkContext();
      const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
      ssc
        .queueStream(GUIDE.map((b) => b.slice()))
        .withWatermark((e) => e.timestamp, Minutes(10))
        .countByEventWindow((e) => e.word, Minutes(10), Minutes(5))
        .chart();
      await ssc.start();
      await ssc.advance(4000);
      await ssc.stop();
      const [chart] = charts;
      const enc = chart?.spec.encoding as Record<string, { field: string }>;
      expect(enc.x?.field).toBe("window");
      expect(enc.y?.field).toBe("value");
      expect(enc.color?.field).toBe("key");
      const last = chart?.batches.at(-1) ?? [];
      // After batch 4 the watermark (12:11) has evicted 12:00-12:10: it left the chart.
      expect([...new Set(last.map((r) => `${hm(r.windowStart as number)}-${hm(r.windowEnd as number)}`))]).toEqual(["12:05-12:15", "12:10-12:20", "12:15-12:25", "12:20-12:30"]);
      expect(last.find((r) => r.windowStart === at("12:10") && r.key === "owl")?.value).toBe(2);
    } finally {
      setPresenter(undefined);
    }
  });
});

/** A seeded generator (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("out of order within the allowed lateness", () => {
  it("property: delaying records by up to two triggers and shuffling them changes no result (update and append)", async () => {
    const SPAN = Minutes(5);
    for (let seed = 1; seed <= 4; seed++) {
      const r = rng(seed);
      const words = ["a", "b", "c", "d", "e"];
      // In order: trigger k gets the events whose time is in [k * SPAN, (k + 1) * SPAN).
      const inOrder: WordEvent[][] = Array.from({ length: 12 }, () => []);
      for (let i = 0; i < 300; i++) {
        const t = Math.floor(r() * 12 * SPAN);
        inOrder[Math.floor(t / SPAN)]?.push({ timestamp: t, word: words[Math.floor(r() * words.length)] as string });
      }
      // Out of order: each record arrives 0-2 triggers later, shuffled. The delay (10 minutes = 2
      // triggers) means none of them is late.
      const shuffled: WordEvent[][] = Array.from({ length: 14 }, () => []);
      inOrder.forEach((batch, k) => batch.forEach((e) => shuffled[k + Math.floor(r() * 3)]?.push(e)));
      for (const b of shuffled) b.sort(() => r() - 0.5);
      // A far-future record then closes every window, so append mode emits them all.
      const close = (bs: WordEvent[][]) => [...bs, [{ timestamp: Minutes(24 * 60), word: "end" }], [], []];
      // The oracle: counts per (window, word) computed directly.
      const oracle = new Map<string, number>();
      for (const e of inOrder.flat()) {
        for (let start = Math.floor(e.timestamp / SPAN) * SPAN; start > e.timestamp - Minutes(10); start -= SPAN) {
          const k = `${hm(start)}-${hm(start + Minutes(10))} ${e.word}`;
          oracle.set(k, (oracle.get(k) ?? 0) + 1);
        }
      }
      const expected = [...oracle].map(([k, n]) => `${k} ${n}`).sort();
      for (const mode of ["update", "append"] as const) {
        const finals: string[][] = [];
        for (const input of [close(inOrder), close(shuffled)]) {
          const { out, infos } = await runGuide(mode, input);
          expect(infos.reduce((n, i) => n + (Object.values(i.eventTime ?? {})[0]?.numRowsDroppedByWatermark ?? 0), 0)).toBe(0);
          // The latest value emitted for each (window, word), without the closing record's windows.
          const latest = new Map<string, string>();
          for (const row of out.flat()) {
            const [win, word] = row.split(" ") as [string, string];
            if (word !== "end") latest.set(`${win} ${word}`, row);
          }
          finals.push([...latest.values()].sort());
          if (mode === "append") expect(out.flat().filter((x) => !x.includes(" end "))).toHaveLength(expected.length);
        }
        expect(finals[0]).toEqual(expected);
        expect(finals[1]).toEqual(expected);
      }
    }
  });
});

describe("checkpoints", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it("the watermark and window state recover exactly: a run stopped after 3 batches ends like an uninterrupted one", async () => {
    const sc = new SparkContext();
    const build = (dir: string | undefined, out: string[][]) => {
      const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
      if (dir) checkpoint(ssc, dir, { interval: 1000 });
      const counts = ssc
        .queueStream(GUIDE.map((b) => b.slice()))
        .withWatermark((e) => e.timestamp, Minutes(10))
        .countByEventWindow((e) => e.word, Minutes(10), Minutes(5), { outputMode: "append", name: "guide-counts" });
      counts.foreachRDD((rdd) => void out.push(rdd.collect().map(fmtRow).sort()));
      return { ssc, counts };
    };
    const reference: string[][] = [];
    const ref = build(undefined, reference);
    await ref.ssc.start();
    for (let i = 0; i < GUIDE.length; i++) await ref.ssc.advance(1000);
    await ref.ssc.stop();

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-eventtime-"));
    dirs.push(dir);
    const out: string[][] = [];
    const first = build(dir, out);
    await first.ssc.start();
    for (let i = 0; i < 3; i++) {
      await first.ssc.advance(1000);
      await checkpointerOf(first.ssc)?.flush();
    }
    const watermarkAtStop = first.counts.watermark;
    await first.ssc.stop();

    let second: ReturnType<typeof build> | undefined;
    const ssc = StreamingContext.getOrCreate(dir, () => (second = build(dir, out)).ssc);
    expect(second?.counts.watermark).toBe(watermarkAtStop);
    expect(second?.counts.state().count()).toBe(12);
    await ssc.start();
    for (let i = 3; i < GUIDE.length; i++) await ssc.advance(1000);
    await ssc.stop();
    await checkpointerOf(ssc)?.flush();
    expect(out).toEqual(reference);
    expect(second?.counts.numRowsDroppedByWatermark).toBe(1);
  });
});
