// `npm run bench:kernel`: streambook against Debian's ipykernel, both driven through jupyter_client
// side by side in one run (bench/kernel_driver.py); prints a table and the ratios to ipykernel.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { install } from "../kernel/install.js";

interface KernelSummary {
  start_median: number;
  first_result_median: number;
  new_sum_median: number;
  one_plus_one_median: number;
  one_plus_one_p99: number;
  typed_median: number;
  session_first: number;
  session_last: number;
  session_cells: number;
  session_window: number;
  cells: number;
  starts: number;
}

type Summary = Record<"streambook" | "ipykernel", KernelSummary>;

function driver(env: NodeJS.ProcessEnv): Promise<Summary> {
  const script = path.resolve(__dirname, "..", "..", "bench", "kernel_driver.py");
  return new Promise((resolve, reject) => {
    const child = spawn("/usr/bin/python3", [script], { env, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`kernel_driver.py exited with ${code}`));
      resolve(JSON.parse(out.trim().split("\n").pop() ?? "{}") as Summary);
    });
  });
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "streambook-bench-"));
  process.env.JUPYTER_DATA_DIR = dataDir;
  install();
  // Debian's ipykernel, named explicitly: a `python3` on PATH may not see Debian's modules.
  const ipy = path.join(dataDir, "kernels", "python3");
  mkdirSync(ipy, { recursive: true });
  writeFileSync(path.join(ipy, "kernel.json"), JSON.stringify({
    argv: ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    display_name: "Python 3 (Debian ipykernel)",
    language: "python",
  }));
  const env = { ...process.env, JUPYTER_DATA_DIR: dataDir, PYDEVD_DISABLE_FILE_VALIDATION: "1" };
  process.stderr.write("running both kernels side by side (a few minutes)...\n");
  let summary: Summary;
  try {
    summary = await driver(env);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  const s = summary.streambook;
  const p = summary.ipykernel;
  const ms = (v: number): string => `${v.toFixed(1)} ms`;
  const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;
  const rows: [string, string, string, string, string][] = [
    [`start -> first kernel_info_reply, median of ${s.starts}`, ms(s.start_median), ms(p.start_median), ratio(s.start_median, p.start_median), "<= 0.5x"],
    [`start -> reply to a first typed cell, median of ${s.starts}`, ms(s.first_result_median), ms(p.first_result_median), ratio(s.first_result_median, p.first_result_median), "<= 1x"],
    [`1+1 repeated, median of ${s.cells}`, ms(s.one_plus_one_median), ms(p.one_plus_one_median), ratio(s.one_plus_one_median, p.one_plus_one_median), "<= 0.5x"],
    [`1+1 repeated, p99 of ${s.cells}`, ms(s.one_plus_one_p99), ms(p.one_plus_one_p99), ratio(s.one_plus_one_p99, p.one_plus_one_p99), ""],
    [`never-seen N+N (2+2, 3+3, ...), median of ${s.cells}`, ms(s.new_sum_median), ms(p.new_sum_median), ratio(s.new_sum_median, p.new_sum_median), "<= 0.5x"],
    [`never-seen typed function cell, median of ${s.cells}`, ms(s.typed_median), ms(p.typed_median), ratio(s.typed_median, p.typed_median), "<= 1x"],
    [`typed cells 1-${s.session_window} of one session, median`, ms(s.session_first), ms(p.session_first), "", ""],
    [`typed cells ${s.session_cells - s.session_window + 1}-${s.session_cells}, median`, ms(s.session_last), ms(p.session_last), "", ""],
    [`growth: cells near ${s.session_cells} / cells near 1`, `${(s.session_last / s.session_first).toFixed(2)}x`, `${(p.session_last / p.session_first).toFixed(2)}x`, "", "<= 1.2x"],
  ];
  const header: [string, string, string, string, string] = ["measure", "streambook", "ipykernel", "ratio", "goal"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of rows) console.log(line(r));
  const f = (v: number): string => `${v.toFixed(2)}x`;
  console.log(
    `summary: start ${f(s.start_median / p.start_median)}, first-result ${f(s.first_result_median / p.first_result_median)}, ` +
      `1+1 ${f(Math.max(s.one_plus_one_median / p.one_plus_one_median, s.new_sum_median / p.new_sum_median))}, ` +
      `typed-cell ${f(s.typed_median / p.typed_median)}, growth ${f(s.session_last / s.session_first)}`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
