// MLlib's local vectors: DenseVector keeps its values in a Float64Array (as cheap as a hand-written
// loop's arrays), SparseVector keeps sorted indices and values. Vectors.parse reads Spark's text forms.

import { IllegalArgumentError } from "../errors.js";

/** Spark's toString of a Double: "1.0", "0.25", "1.0E-4", "1.0E7", "NaN", "Infinity". */
export function formatDouble(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const a = Math.abs(x);
  if (a >= 1e-3 && a < 1e7) {
    const s = String(x);
    return s.includes(".") ? s : `${s}.0`;
  }
  const [mantissa, exp] = x.toExponential().split("e") as [string, string];
  return `${mantissa.includes(".") ? mantissa : `${mantissa}.0`}E${exp.startsWith("+") ? exp.slice(1) : exp}`;
}

/** A local vector of doubles: dense or sparse, compared by value with equals(). */
export abstract class Vector {
  abstract readonly size: number;
  /** The i-th element (0 for an index a sparse vector does not hold). */
  abstract apply(i: number): number;
  abstract toArray(): Float64Array;
  abstract toDense(): DenseVector;
  abstract toSparse(): SparseVector;
  abstract copy(): Vector;
  abstract numNonzeros(): number;
  /** Calls f(index, value) for every stored element (dense: all of them). */
  abstract foreachActive(f: (i: number, v: number) => void): void;
  /** JSON form (checkpoints, display): dense as a plain array, sparse as { size, indices, values }. */
  abstract toJSON(): number[] | { size: number; indices: number[]; values: number[] };

  /** Equal size and equal elements (a dense and a sparse vector can be equal). */
  equals(other: unknown): boolean {
    if (!(other instanceof Vector) || other.size !== this.size) return false;
    const a = this.toArray();
    const b = other.toArray();
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
    return true;
  }

  /** The index of the largest element (-1 for an empty vector). */
  argmax(): number {
    const a = this.toArray();
    if (a.length === 0) return -1;
    let best = 0;
    for (let i = 1; i < a.length; i++) if ((a[i] as number) > (a[best] as number)) best = i;
    return best;
  }
}

export class DenseVector extends Vector {
  readonly values: Float64Array;

  constructor(values: Float64Array | ArrayLike<number>) {
    super();
    this.values = values instanceof Float64Array ? values : Float64Array.from(values);
  }

  get size(): number {
    return this.values.length;
  }

  apply(i: number): number {
    if (!(i >= 0 && i < this.values.length)) throw new IllegalArgumentError(`index ${i} out of bounds for a vector of size ${this.values.length}`);
    return this.values[i] as number;
  }

  toArray(): Float64Array {
    return this.values;
  }

  toDense(): DenseVector {
    return this;
  }

  toSparse(): SparseVector {
    const idx: number[] = [];
    const vals: number[] = [];
    for (let i = 0; i < this.values.length; i++) {
      const v = this.values[i] as number;
      if (v !== 0) {
        idx.push(i);
        vals.push(v);
      }
    }
    return new SparseVector(this.values.length, idx, vals);
  }

  copy(): DenseVector {
    return new DenseVector(this.values.slice());
  }

  numNonzeros(): number {
    let n = 0;
    for (const v of this.values) if (v !== 0) n++;
    return n;
  }

  foreachActive(f: (i: number, v: number) => void): void {
    for (let i = 0; i < this.values.length; i++) f(i, this.values[i] as number);
  }

  toJSON(): number[] {
    return Array.from(this.values);
  }

  toString(): string {
    return `[${Array.from(this.values, formatDouble).join(",")}]`;
  }
}

export class SparseVector extends Vector {
  readonly size: number;
  readonly indices: Int32Array;
  readonly values: Float64Array;

  constructor(size: number, indices: ArrayLike<number>, values: ArrayLike<number>) {
    super();
    if (!(Number.isInteger(size) && size >= 0)) throw new IllegalArgumentError(`requirement failed: The size of the requested sparse vector must be no less than 0, got ${size}`);
    if (indices.length !== values.length) {
      throw new IllegalArgumentError(
        `requirement failed: Sparse vectors require that the dimension of the indices match the dimension of the values. You provided ${indices.length} indices and ${values.length} values.`,
      );
    }
    if (indices.length > size) {
      throw new IllegalArgumentError(`requirement failed: You provided ${indices.length} indices and values, which exceeds the specified vector size ${size}.`);
    }
    let prev = -1;
    for (let i = 0; i < indices.length; i++) {
      const j = indices[i] as number;
      if (!Number.isInteger(j) || j < 0) throw new IllegalArgumentError(`requirement failed: Found negative index: ${j}.`);
      if (j <= prev) throw new IllegalArgumentError(`requirement failed: Index ${prev} follows ${j} and is not strictly increasing`);
      prev = j;
    }
    if (prev >= size) throw new IllegalArgumentError(`requirement failed: Index ${prev} out of bounds for vector of size ${size}`);
    this.size = size;
    this.indices = Int32Array.from(indices);
    this.values = values instanceof Float64Array ? values : Float64Array.from(values);
  }

  apply(i: number): number {
    if (!(i >= 0 && i < this.size)) throw new IllegalArgumentError(`index ${i} out of bounds for a vector of size ${this.size}`);
    let lo = 0;
    let hi = this.indices.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const j = this.indices[mid] as number;
      if (j === i) return this.values[mid] as number;
      if (j < i) lo = mid + 1;
      else hi = mid - 1;
    }
    return 0;
  }

  toArray(): Float64Array {
    const out = new Float64Array(this.size);
    for (let k = 0; k < this.indices.length; k++) out[this.indices[k] as number] = this.values[k] as number;
    return out;
  }

  toDense(): DenseVector {
    return new DenseVector(this.toArray());
  }

  toSparse(): SparseVector {
    return this;
  }

  copy(): SparseVector {
    return new SparseVector(this.size, this.indices.slice(), this.values.slice());
  }

  numNonzeros(): number {
    let n = 0;
    for (const v of this.values) if (v !== 0) n++;
    return n;
  }

  foreachActive(f: (i: number, v: number) => void): void {
    for (let k = 0; k < this.indices.length; k++) f(this.indices[k] as number, this.values[k] as number);
  }

  toJSON(): { size: number; indices: number[]; values: number[] } {
    return { size: this.size, indices: Array.from(this.indices), values: Array.from(this.values) };
  }

  toString(): string {
    return `(${this.size},[${Array.from(this.indices).join(",")}],[${Array.from(this.values, formatDouble).join(",")}])`;
  }
}

/** A text form Vectors.parse or LabeledPoint.parse cannot read. */
export class VectorParseError extends IllegalArgumentError {}

/** Spark's NumericParser: numbers, arrays "[...]" and tuples "(...)", nested, comma separated. */
export type Numeric = number | number[] | Numeric[];
interface Tuple {
  tuple: ParsedNumeric[];
}
type ParsedNumeric = number | number[] | Tuple;

export function parseNumeric(s: string): ParsedNumeric {
  let i = 0;
  const fail = (what: string): never => {
    throw new VectorParseError(`Cannot parse ${JSON.stringify(s)}: ${what} at position ${i}`);
  };
  const skip = () => {
    while (i < s.length && /\s/.test(s[i] as string)) i++;
  };
  const number = (): number => {
    skip();
    const m = /^[+-]?(?:NaN|Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)/.exec(s.slice(i));
    if (!m) fail("expected a number");
    i += (m as RegExpExecArray)[0].length;
    return Number((m as RegExpExecArray)[0]);
  };
  const array = (): number[] => {
    i++; // [
    const out: number[] = [];
    skip();
    if (s[i] === "]") {
      i++;
      return out;
    }
    for (;;) {
      out.push(number());
      skip();
      if (s[i] === ",") i++;
      else if (s[i] === "]") {
        i++;
        return out;
      } else fail("expected ',' or ']'");
    }
  };
  const value = (): ParsedNumeric => {
    skip();
    if (s[i] === "[") return array();
    if (s[i] === "(") return tuple();
    return number();
  };
  const tuple = (): Tuple => {
    i++; // (
    const out: ParsedNumeric[] = [];
    skip();
    if (s[i] === ")") {
      i++;
      return { tuple: out };
    }
    for (;;) {
      out.push(value());
      skip();
      if (s[i] === ",") i++;
      else if (s[i] === ")") {
        i++;
        return { tuple: out };
      } else fail("expected ',' or ')'");
    }
  };
  const v = value();
  skip();
  if (i < s.length) fail("unexpected text");
  return v;
}

/** Internal: a vector from a parsed numeric ("[...]" dense, "(size,[indices],[values])" sparse). */
export function vectorFromNumeric(p: ParsedNumeric, source: string): Vector {
  if (Array.isArray(p)) return new DenseVector(p);
  if (typeof p === "object" && p.tuple.length === 3) {
    const [size, indices, values] = p.tuple;
    if (typeof size === "number" && Array.isArray(indices) && Array.isArray(values)) return new SparseVector(size, indices, values);
  }
  throw new VectorParseError(`Cannot parse ${JSON.stringify(source)} as a vector: use "[1.0,2.0]" (dense) or "(3,[0,2],[1.0,2.0])" (sparse)`);
}

/** Spark's Vectors factory. */
export const Vectors = {
  /** Vectors.dense(1.0, 2.0) or Vectors.dense([1.0, 2.0]) or Vectors.dense(float64Array). */
  dense(first: number | ArrayLike<number>, ...rest: number[]): DenseVector {
    if (typeof first === "number") return new DenseVector([first, ...rest]);
    return new DenseVector(first instanceof Float64Array ? first : Float64Array.from(first));
  },

  /** Vectors.sparse(size, indices, values), or Vectors.sparse(size, [[index, value], ...]) (sorted for you). */
  sparse(size: number, indicesOrPairs: ArrayLike<number> | [number, number][], values?: ArrayLike<number>): SparseVector {
    if (values === undefined) {
      const pairs = (Array.from(indicesOrPairs as [number, number][]) as [number, number][]).slice().sort((a, b) => a[0] - b[0]);
      return new SparseVector(size, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
    }
    return new SparseVector(size, indicesOrPairs as ArrayLike<number>, values);
  },

  zeros(size: number): DenseVector {
    return new DenseVector(new Float64Array(size));
  },

  /** Parses Spark's text forms: "[1.0,2.0]" (dense) or "(3,[0,2],[1.0,2.0])" (sparse). */
  parse(s: string): Vector {
    return vectorFromNumeric(parseNumeric(s), s);
  },

  /** The vector a checkpoint or toJSON() wrote. */
  fromJSON(json: unknown): Vector {
    if (Array.isArray(json)) return new DenseVector(json as number[]);
    const o = json as { size?: number; indices?: number[]; values?: number[] } | null;
    if (o && typeof o.size === "number" && Array.isArray(o.indices) && Array.isArray(o.values)) return new SparseVector(o.size, o.indices, o.values);
    throw new VectorParseError(`not a vector's JSON form: ${JSON.stringify(json)?.slice(0, 80)}`);
  },

  /** The p-norm (p >= 1; Infinity for the largest absolute value). */
  norm(v: Vector, p: number): number {
    if (!(p >= 1)) throw new IllegalArgumentError(`requirement failed: To compute the p-norm of the vector, we require that you specify a p>=1. You specified p=${p}.`);
    const vals = v instanceof SparseVector ? v.values : v.toArray();
    let s = 0;
    if (p === 1) for (const x of vals) s += Math.abs(x);
    else if (p === 2) for (const x of vals) s += x * x;
    else if (p === Infinity) {
      for (const x of vals) s = Math.max(s, Math.abs(x));
      return s;
    } else for (const x of vals) s += Math.abs(x) ** p;
    return p === 1 ? s : p === 2 ? Math.sqrt(s) : s ** (1 / p);
  },

  /** Squared Euclidean distance. */
  sqdist(a: Vector, b: Vector): number {
    if (a.size !== b.size) throw new IllegalArgumentError(`requirement failed: Vector dimensions do not match: Dim(v1)=${a.size} and Dim(v2)=${b.size}.`);
    const x = a.toArray();
    const y = b.toArray();
    let s = 0;
    for (let i = 0; i < x.length; i++) {
      const d = (x[i] as number) - (y[i] as number);
      s += d * d;
    }
    return s;
  },
};

/** Internal: x . y (x dense values or a sparse vector; y dense values of the same size). */
export function dot(x: Vector, y: Float64Array): number {
  let s = 0;
  if (x instanceof DenseVector) {
    const a = x.values;
    for (let j = 0; j < a.length; j++) s += (a[j] as number) * (y[j] as number);
  } else {
    const sv = x as SparseVector;
    const idx = sv.indices;
    const vals = sv.values;
    for (let k = 0; k < idx.length; k++) s += (vals[k] as number) * (y[idx[k] as number] as number);
  }
  return s;
}

/** Internal: y += a * x. */
export function axpy(a: number, x: Vector, y: Float64Array): void {
  if (x instanceof DenseVector) {
    const v = x.values;
    for (let j = 0; j < v.length; j++) y[j] = (y[j] as number) + a * (v[j] as number);
  } else {
    const sv = x as SparseVector;
    const idx = sv.indices;
    const vals = sv.values;
    for (let k = 0; k < idx.length; k++) {
      const j = idx[k] as number;
      y[j] = (y[j] as number) + a * (vals[k] as number);
    }
  }
}

/** Internal: the first index whose stored value is NaN or infinite, or -1. */
export function firstNonFinite(x: Vector): number {
  const vals = x instanceof SparseVector ? x.values : x.toArray();
  for (let k = 0; k < vals.length; k++) {
    if (!Number.isFinite(vals[k] as number)) return x instanceof SparseVector ? (x.indices[k] as number) : k;
  }
  return -1;
}
