// Records to rows, and the row types toDF gives: pairs become key/value, other tuples _1, _2, ...
// (Spark's tuple columns), objects keep their fields, other values become `value`; given column names
// rename them in order.
import { AnalysisException } from "./errors.js";
import type { Row, SqlValue } from "./types.js";

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

// ---- the row type of `stream.sql(query)`, read off the query's select list where that is simple ----

type Ws = " " | "\n" | "\t" | "\r";
type TrimLeft<S extends string> = S extends `${Ws}${infer R}` ? TrimLeft<R> : S;
type TrimRight<S extends string> = S extends `${infer R}${Ws}` ? TrimRight<R> : S;
type Trim<S extends string> = TrimLeft<TrimRight<S>>;
type SelectWord = "select" | "SELECT" | "Select";
type FromWord = "from" | "FROM" | "From";
type AsWord = "as" | "AS" | "As";
type Operator = "(" | ")" | " " | "*" | "+" | "-" | "/" | "'" | '"' | "|" | "\n";

type SelectList<Q extends string> =
  Trim<Q> extends `${SelectWord}${Ws}${infer Rest}` ? (Rest extends `${infer L}${Ws}${FromWord}${Ws}${string}` ? Trim<L> : never) : never;
type SplitItems<L extends string> = L extends `${infer A},${infer B}` ? [Trim<A>, ...SplitItems<B>] : [Trim<L>];
type IsIdentifier<S extends string> = S extends "" ? false : S extends `${string}${Operator}${string}` ? false : true;
type LastPart<S extends string> = S extends `${string}.${infer R}` ? LastPart<R> : S;

/** One select item as [name, type]: `expr AS alias`, a column (`t.col`), or never when it has no simple name. */
type Item<S extends string, B> = S extends `${infer E}${Ws}${AsWord}${Ws}${infer A}`
  ? [Trim<A>, ItemType<Trim<E>, B>]
  : IsIdentifier<S> extends true
    ? [LastPart<S>, ItemType<S, B>]
    : never;
type ItemType<E extends string, B> = LastPart<E> extends keyof B
  ? IsIdentifier<E> extends true
    ? B[LastPart<E>]
    : SqlValue
  : E extends `${"count" | "COUNT" | "sum" | "SUM" | "avg" | "AVG"}(${string}`
    ? number
    : SqlValue;

type Items<L extends readonly string[], B> = { [I in keyof L]: L[I] extends "*" ? ["*", B] : Item<L[I] & string, B> };
type HasUnnamed<T extends readonly unknown[]> = T extends readonly [infer H, ...infer R] ? ([H] extends [never] ? true : HasUnnamed<R>) : false;
type FromItems<T extends readonly unknown[]> = UnionToObject<Extract<T[number], [string, unknown]>>;
type UnionToObject<E extends [string, unknown]> = { [P in E as P[0] extends "*" ? never : P[0]]: P[1] } & SpreadStar<E>;
type SpreadStar<E extends [string, unknown]> = Extract<E, ["*", unknown]> extends ["*", infer B] ? (B extends object ? B : unknown) : unknown;

/**
 * The row type of a query over `batch` rows of type B, when the select list is simple: `select a, b.c,
 * x as y, count(*) as n, * from ...`. Columns of the batch keep their types, counts and sums are numbers,
 * other expressions are SqlValue; a select list with an item it cannot name gives Row.
 */
export type QueryRow<Q extends string, B> = string extends Q
  ? Row
  : SelectList<Q> extends never
    ? Row
    : Items<SplitItems<SelectList<Q>>, B> extends infer T extends readonly unknown[]
      ? HasUnnamed<T> extends true
        ? Row
        : Simplify<FromItems<T>>
      : Row;
type Simplify<T> = { [K in keyof T]: T[K] };
