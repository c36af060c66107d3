// Schemas (Spark's StructType/StructField, with Spark's simple type names) and the mapping of JavaScript
// values to DuckDB columns and back. Numbers that are all integers are `bigint` (Spark's LongType),
// other numbers `double`; arrays and objects go to DuckDB as JSON text.

/** A value in a row that came back from DuckDB. */
export type SqlValue = string | number | bigint | boolean | Date | null | SqlValue[] | { [field: string]: SqlValue };

/** A row as a plain object, column name -> value. */
export type Row = Record<string, SqlValue>;

/** Spark's simple type names (as in `df.schema.simpleString()`); others are DuckDB's own, lower-cased. */
export type DataTypeName = "string" | "bigint" | "int" | "double" | "float" | "boolean" | "timestamp" | "date" | (string & {});

export class StructField {
  constructor(
    readonly name: string,
    readonly dataType: DataTypeName,
    readonly nullable = true,
  ) {}

  toString(): string {
    return `StructField(${this.name},${this.dataType},${this.nullable})`;
  }
}

export class StructType {
  constructor(readonly fields: readonly StructField[]) {}

  get fieldNames(): string[] {
    return this.fields.map((f) => f.name);
  }

  /** Spark's `struct<word:string,total:bigint>`. */
  simpleString(): string {
    return `struct<${this.fields.map((f) => `${f.name}:${f.dataType}`).join(",")}>`;
  }

  /** Spark's printSchema() tree. */
  treeString(): string {
    return ["root", ...this.fields.map((f) => ` |-- ${f.name}: ${typeName(f.dataType)} (nullable = ${f.nullable})`)].join("\n") + "\n";
  }

  toString(): string {
    return `StructType(${this.fields.map(String).join(",")})`;
  }
}

/** printSchema() uses Spark's type names (long, integer), not the SQL ones (bigint, int). */
function typeName(t: DataTypeName): string {
  return t === "bigint" ? "long" : t === "int" ? "integer" : t;
}

/** DuckDB's column type for a Spark type name. */
export function duckType(t: DataTypeName): string {
  switch (t) {
    case "string":
      return "VARCHAR";
    case "bigint":
      return "BIGINT";
    case "int":
      return "INTEGER";
    case "double":
      return "DOUBLE";
    case "float":
      return "FLOAT";
    case "boolean":
      return "BOOLEAN";
    case "timestamp":
      return "TIMESTAMP";
    case "date":
      return "DATE";
    default:
      return t.toUpperCase();
  }
}

/** Spark's type name for a DuckDB type as DuckDB prints it (BIGINT, DECIMAL(4,1), VARCHAR[] ...). */
export function sparkType(duck: string): DataTypeName {
  switch (duck) {
    case "VARCHAR":
      return "string";
    case "BIGINT":
      return "bigint";
    case "INTEGER":
      return "int";
    case "SMALLINT":
      return "smallint";
    case "TINYINT":
      return "tinyint";
    case "DOUBLE":
      return "double";
    case "FLOAT":
      return "float";
    case "BOOLEAN":
      return "boolean";
    case "TIMESTAMP":
    case "TIMESTAMP WITH TIME ZONE":
      return "timestamp";
    case "DATE":
      return "date";
    case "HUGEINT":
      return "decimal(38,0)";
    default:
      return duck.toLowerCase();
  }
}

/** The type of one column from its values: the narrowest of string, bigint, double, boolean, timestamp that holds them all. */
export function inferType(values: Iterable<unknown>): { type: DataTypeName; nullable: boolean } {
  let kind: "none" | "bigint" | "double" | "boolean" | "timestamp" | "string" | "json" = "none";
  let nullable = false;
  const widen = (k: typeof kind): void => {
    if (kind === "none" || kind === k) kind = k;
    else if ((kind === "bigint" && k === "double") || (kind === "double" && k === "bigint")) kind = "double";
    else kind = "string";
  };
  for (const v of values) {
    if (v === null || v === undefined) {
      nullable = true;
      continue;
    }
    switch (typeof v) {
      case "number":
        widen(Number.isSafeInteger(v) ? "bigint" : "double");
        break;
      case "bigint":
        widen("bigint");
        break;
      case "boolean":
        widen("boolean");
        break;
      case "string":
        widen("string");
        break;
      default:
        if (v instanceof Date) widen("timestamp");
        else if (kind === "none" || kind === "json") kind = "json";
        else kind = "string";
    }
  }
  const type: DataTypeName = kind === "none" || kind === "json" ? "string" : kind;
  return { type, nullable: nullable || kind === "none" };
}

/** A JavaScript value as DuckDB's input for a column of `type` (JSON text for arrays and objects). */
export function toColumnValue(v: unknown, type: DataTypeName): unknown {
  if (v === null || v === undefined) return null;
  switch (type) {
    case "bigint":
      return typeof v === "bigint" ? v : BigInt(v as number);
    case "double":
      return typeof v === "bigint" ? Number(v) : (v as number);
    case "boolean":
      return v;
    case "timestamp":
      return v;
    default:
      return typeof v === "string" ? v : v instanceof Date ? v.toISOString() : typeof v === "object" ? JSON.stringify(v) : String(v);
  }
}

/** A value read from DuckDB as JavaScript: integers within Number's safe range become numbers. */
export function fromDuck(v: unknown): SqlValue {
  if (typeof v === "bigint") return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(fromDuck);
  if (v !== null && typeof v === "object" && !(v instanceof Date)) {
    const out: Record<string, SqlValue> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = fromDuck(x);
    return out;
  }
  return v as SqlValue;
}

/** Quotes an identifier for DuckDB ("a""b"); names can never be bound as parameters. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal for the few places DuckDB takes no parameter (COPY ... TO 'path'). */
export function quoteLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
