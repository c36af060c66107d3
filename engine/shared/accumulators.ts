// Spark's AccumulatorV2 family: LongAccumulator, DoubleAccumulator, CollectionAccumulator. Tasks add
// to them and the driver reads value; here both sides are this process. Like Spark's, they are not
// restored from a checkpoint: re-create them lazily after recovery (the guide's singleton pattern).

import { IllegalArgumentError } from "../errors.js";

let nextAccumulatorId = 0;

export abstract class AccumulatorV2<IN, OUT> {
  readonly id = nextAccumulatorId++;
  /** Set when registered through sc.longAccumulator(name) and friends. */
  name: string | undefined;

  abstract add(v: IN): void;
  abstract get value(): OUT;
  /** True when this accumulator holds its zero value (nothing added since creation or reset). */
  abstract isZero(): boolean;
  abstract reset(): void;
  /** A new accumulator of the same kind with the same value (not registered). */
  abstract copy(): AccumulatorV2<IN, OUT>;
  /** Adds another accumulator of the same kind into this one. */
  abstract merge(other: AccumulatorV2<IN, OUT>): void;

  /** A copy holding the zero value. */
  copyAndReset(): AccumulatorV2<IN, OUT> {
    const c = this.copy();
    c.reset();
    return c;
  }

  protected mergeError(other: AccumulatorV2<unknown, unknown>): never {
    throw new IllegalArgumentError(`Cannot merge ${this.constructor.name} with ${other.constructor.name}`);
  }

  toString(): string {
    return `${this.constructor.name}(id: ${this.id}, name: ${this.name ?? "None"}, value: ${formatValue(this.value)})`;
  }
}

function formatValue(v: unknown): string {
  return Array.isArray(v) ? `[${v.map(String).join(", ")}]` : String(v);
}

/** Sums integers, keeping their count (sum, count, avg). */
export class LongAccumulator extends AccumulatorV2<number, number> {
  private _sum = 0;
  private _count = 0;

  add(v: number): void {
    if (!Number.isInteger(v)) throw new IllegalArgumentError(`LongAccumulator.add(${v}): add integers, or use sc.doubleAccumulator()`);
    this._sum += v;
    this._count++;
  }

  get value(): number {
    return this._sum;
  }

  get sum(): number {
    return this._sum;
  }

  get count(): number {
    return this._count;
  }

  /** sum / count (NaN before anything was added, as Spark's 0.0 / 0). */
  get avg(): number {
    return this._sum / this._count;
  }

  isZero(): boolean {
    return this._sum === 0 && this._count === 0;
  }

  reset(): void {
    this._sum = 0;
    this._count = 0;
  }

  copy(): LongAccumulator {
    const c = new LongAccumulator();
    c._sum = this._sum;
    c._count = this._count;
    return c;
  }

  merge(other: AccumulatorV2<number, number>): void {
    if (!(other instanceof LongAccumulator)) this.mergeError(other);
    this._sum += other._sum;
    this._count += other._count;
  }
}

/** Sums doubles, keeping their count (sum, count, avg). */
export class DoubleAccumulator extends AccumulatorV2<number, number> {
  private _sum = 0;
  private _count = 0;

  add(v: number): void {
    if (typeof v !== "number") throw new IllegalArgumentError(`DoubleAccumulator.add(${String(v)}): add numbers`);
    this._sum += v;
    this._count++;
  }

  get value(): number {
    return this._sum;
  }

  get sum(): number {
    return this._sum;
  }

  get count(): number {
    return this._count;
  }

  get avg(): number {
    return this._sum / this._count;
  }

  isZero(): boolean {
    return this._sum === 0 && this._count === 0;
  }

  reset(): void {
    this._sum = 0;
    this._count = 0;
  }

  copy(): DoubleAccumulator {
    const c = new DoubleAccumulator();
    c._sum = this._sum;
    c._count = this._count;
    return c;
  }

  merge(other: AccumulatorV2<number, number>): void {
    if (!(other instanceof DoubleAccumulator)) this.mergeError(other);
    this._sum += other._sum;
    this._count += other._count;
  }
}

/** Collects the elements added, in order; value is a copy of the list. */
export class CollectionAccumulator<T> extends AccumulatorV2<T, T[]> {
  private list: T[] = [];

  add(v: T): void {
    this.list.push(v);
  }

  get value(): T[] {
    return this.list.slice();
  }

  isZero(): boolean {
    return this.list.length === 0;
  }

  reset(): void {
    this.list = [];
  }

  copy(): CollectionAccumulator<T> {
    const c = new CollectionAccumulator<T>();
    c.list = this.list.slice();
    return c;
  }

  merge(other: AccumulatorV2<T, T[]>): void {
    if (!(other instanceof CollectionAccumulator)) this.mergeError(other);
    for (const x of (other as CollectionAccumulator<T>).list) this.list.push(x);
  }
}

/** What ssc.ui() shows of an accumulator. */
export interface AccumulatorInfo {
  id: number;
  name: string;
  value: string;
}
