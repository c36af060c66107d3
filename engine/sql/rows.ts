// Records to rows, and the row types toDF gives: pairs become key/value, other tuples _1, _2, ...
// (Spark's tuple columns), objects keep their fields, other values become `value`; given column names
// rename them in order.
import { AnalysisException } from "./errors.js";
import type { Row } from "./types.js";

/** The row toDF() makes of a record of type T. */
export type RowOf<T> = T extends readonly [infer K, infer V]
  ? { key: K; value: V }
  : T extends readonly unknown[]
    ? { [I in keyof T & `${number}` as `_${NextIndex<I>}`]: T[I] }
    : T extends Date
      ? { value: T }
      : T extends object
        ? T
        : { value: T };

type NextIndex<I extends string> = I extends "0" ? "1" : I extends "1" ? "2" : I extends "2" ? "3" : I extends "3" ? "4" : I extends "4" ? "5" : I extends "5" ? "6" : I extends "6" ? "7" : I extends "7" ? "8" : string;

/** The row toDF(names) makes of a record of type T: tuple elements (or the one value) named in order. */
export type NamedRowOf<T, N extends readonly string[]> = T extends readonly unknown[]
  ? { [I in keyof N & `${number}` as N[I] & string]: I extends keyof T ? T[I] : unknown }
  : T extends Date | string | number | boolean | bigint | null | undefined
    ? N extends readonly [infer A extends string]
      ? { [P in A]: T }
      : Row
    : Row;

function isPlainRecord(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === "object" && !Array.isArray(x) && !(x instanceof Date) && !(x instanceof Map) && !(x instanceof Set);
}

/** Rows (plain objects) for records; `columns` names tuple elements, a single value, or renames object fields in order. */
export function toRows(records: readonly unknown[], columns?: readonly string[]): object[] {
  const names = columns && columns.length > 0 ? columns : undefined;
  const out: object[] = new Array(records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (Array.isArray(r)) {
      const o: Record<string, unknown> = {};
      if (names) {
        if (r.length !== names.length) throw new AnalysisException(`toDF(${names.map((n) => JSON.stringify(n)).join(", ")}): the records have ${r.length} elements, give ${r.length} column names`);
        for (let j = 0; j < r.length; j++) o[names[j] as string] = r[j];
      } else if (r.length === 2) {
        o.key = r[0];
        o.value = r[1];
      } else for (let j = 0; j < r.length; j++) o[`_${j + 1}`] = r[j];
      out[i] = o;
    } else if (isPlainRecord(r)) {
      if (names) {
        const keys = Object.keys(r);
        if (keys.length !== names.length) throw new AnalysisException(`toDF: the objects have ${keys.length} fields (${keys.join(", ")}), give ${keys.length} column names or none`);
        const o: Record<string, unknown> = {};
        for (let j = 0; j < keys.length; j++) o[names[j] as string] = r[keys[j] as string];
        out[i] = o;
      } else out[i] = r;
    } else {
      if (names && names.length !== 1) throw new AnalysisException(`toDF: the records are single values, give one column name, not ${names.length}`);
      out[i] = { [names ? (names[0] as string) : "value"]: r };
    }
  }
  return out;
}
