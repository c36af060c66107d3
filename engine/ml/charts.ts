// Vega-Lite specs and rows for models you can watch. They go through DStream.chart, so they have
// the same modes, SVG rendering and update rate limits as any stream chart.

import type { KMeansBatchSummary } from "./kmeans.js";
import type { LinearModelBatchSummary } from "./regression.js";
import { DenseVector, type Vector } from "./linalg.js";

export interface ModelChartOptions {
  title?: string;
  /** Batches (or rows) kept on a time axis (append-mode charts). */
  maxRows?: number;
}

export type KMeansChartRow = { kind: "point" | "centre"; x: number; y: number; cluster: number; weight?: number };

export function kmeansChartSpec(dims: [number, number]): Record<string, unknown> {
  const x = { field: "x", type: "quantitative", title: `x[${dims[0]}]`, scale: { zero: false } };
  const y = { field: "y", type: "quantitative", title: `x[${dims[1]}]`, scale: { zero: false } };
  return {
    width: 400,
    height: 300,
    layer: [
      {
        transform: [{ filter: "datum.kind === 'point'" }],
        mark: { type: "circle", opacity: 0.35, size: 14 },
        encoding: { x, y, color: { field: "cluster", type: "nominal", title: "cluster" } },
      },
      {
        transform: [{ filter: "datum.kind === 'centre'" }],
        mark: { type: "point", shape: "cross", size: 260, filled: true, stroke: "black", strokeWidth: 1 },
        encoding: { x, y, color: { field: "cluster", type: "nominal", title: "cluster" } },
      },
    ],
  };
}

/** Up to maxPoints points of the batch (evenly spread) coloured by their nearest centre, then the centres. */
export function kmeansChartRows(s: KMeansBatchSummary, dims: [number, number], maxPoints: number): KMeansChartRow[] {
  const rows: KMeansChartRow[] = [];
  const stride = Math.max(1, Math.ceil(s.count / maxPoints));
  let i = 0;
  const at = (v: Vector, j: number): number => (v instanceof DenseVector ? (v.values[j] ?? 0) : j < v.size ? v.apply(j) : 0);
  for (const part of s.points) {
    for (const v of part) {
      if (i++ % stride !== 0) continue;
      // Nearest centre over all dimensions, as the model assigns it.
      let best = 0;
      let bestD = Infinity;
      const full = v.toArray();
      s.clusterCenters.forEach((c, ci) => {
        let d = 0;
        for (let j = 0; j < c.length; j++) {
          const t = (full[j] ?? 0) - (c[j] as number);
          d += t * t;
        }
        if (d < bestD) {
          bestD = d;
          best = ci;
        }
      });
      rows.push({ kind: "point", x: at(v, dims[0]), y: at(v, dims[1]), cluster: best });
    }
  }
  s.clusterCenters.forEach((c, ci) => rows.push({ kind: "centre", x: c[dims[0]] ?? 0, y: c[dims[1]] ?? 0, cluster: ci, weight: s.clusterWeights[ci] as number }));
  return rows;
}

export type RegressionChartRow = { panel: "weights" | "error"; key: string; value: number };

export function regressionChartSpec(timeType: "quantitative" | "temporal", errorTitle: string): Record<string, unknown> {
  const x = { field: "time", type: timeType, title: "batch time", scale: { nice: false, zero: false } };
  return {
    vconcat: [
      {
        width: 400,
        height: 160,
        title: "weights",
        transform: [{ filter: "datum.panel === 'weights'" }],
        mark: { type: "line", point: true },
        encoding: { x, y: { field: "value", type: "quantitative", title: "weight" }, color: { field: "key", type: "nominal", title: "weight" } },
      },
      {
        width: 400,
        height: 120,
        title: errorTitle,
        transform: [{ filter: "datum.panel === 'error'" }],
        mark: { type: "line", point: true, color: "firebrick" },
        encoding: { x, y: { field: "value", type: "quantitative", title: errorTitle, scale: { type: "symlog" } } },
      },
    ],
  };
}

/** The first `maxWeights` weights and the batch's error before the update. */
export function regressionChartRows(s: LinearModelBatchSummary, maxWeights: number): RegressionChartRow[] {
  const rows: RegressionChartRow[] = [];
  for (let j = 0; j < Math.min(maxWeights, s.weights.length); j++) rows.push({ panel: "weights", key: `w[${j}]`, value: s.weights[j] as number });
  if (Number.isFinite(s.error)) rows.push({ panel: "error", key: "error", value: s.error });
  return rows;
}

export function pValueChartSpec(timeType: "quantitative" | "temporal"): Record<string, unknown> {
  return {
    width: 400,
    height: 200,
    layer: [
      {
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "time", type: timeType, title: "batch time", scale: { nice: false, zero: false } },
          y: { field: "pValue", type: "quantitative", title: "p-value", scale: { domain: [0, 1] } },
        },
      },
      { mark: { type: "rule", strokeDash: [4, 4], color: "gray" }, encoding: { y: { datum: 0.05 } } },
    ],
  };
}
