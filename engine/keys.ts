// Record keys compared by value, as Spark compares Python tuples and Scala case classes: the one
// place where the engine decides when two keys are "the same" (grouping, joins, state, windows).

import { types } from "node:util";

/**
 * Key equality used by every keyed operator:
 * - primitives (string, number, boolean, bigint, symbol, null, undefined) compare as a JS Map does
 *   (SameValueZero: NaN equals NaN, -0 equals 0);
 * - arrays (tuples), plain objects (own enumerable string keys, in any order) and Dates compare by
 *   value, recursively; objects made in another realm (a notebook's vm context) count too;
 * - anything else (class instances, Maps, Sets, functions) keeps identity semantics, also inside a
 *   tuple: `[instance, 1]` groups with another tuple holding the same instance.
 * A cyclic tuple or object compares by identity from the point where it repeats.
 */
export function keysEqual(a: unknown, b: unknown): boolean {
  if (a === b || (a !== a && b !== b)) return true;
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return false;
  const ea = structuralKey(a);
  return ea !== undefined && ea === structuralKey(b);
}

const ids = new WeakMap<object, number>();
const symbolIds = new Map<symbol, number>();
let nextId = 0;

function identity(x: object): string {
  let id = ids.get(x);
  if (id === undefined) ids.set(x, (id = nextId++));
  return `#${id}`;
}

/** True for objects whose prototype is null or a realm's Object.prototype. */
function isPlainObject(x: object): boolean {
  const p: unknown = Object.getPrototypeOf(x);
  return p === null || Object.getPrototypeOf(p) === null;
}

function encode(x: unknown, stack: object[]): string {
  switch (typeof x) {
    case "string":
      // Length-prefixed, so no escaping is needed and the encoding stays unambiguous (and fast).
      return `s${x.length}:${x}`;
    case "number":
      // String(-0) is "0" and String(NaN) "NaN": SameValueZero, as Map keys.
      return String(x);
    case "bigint":
      return `${x}n`;
    case "boolean":
      return x ? "true" : "false";
    case "undefined":
      return "undefined";
    case "symbol": {
      let id = symbolIds.get(x);
      if (id === undefined) symbolIds.set(x, (id = nextId++));
      return `@${id}`;
    }
    case "function":
      return identity(x);
  }
  if (x === null) return "null";
  const o = x as object;
  const isArray = Array.isArray(o);
  if (!isArray && !isPlainObject(o)) return types.isDate(o) ? `D${Date.prototype.getTime.call(o)}` : identity(o);
  if (stack.includes(o)) return identity(o);
  stack.push(o);
  let s: string;
  if (isArray) {
    const a = o as unknown[];
    s = "[";
    for (let i = 0; i < a.length; i++) s += (i ? "," : "") + encode(a[i], stack);
    s += "]";
  } else {
    const rec = o as Record<string, unknown>;
    const names = Object.keys(rec);
    for (let i = 1; i < names.length; i++) {
      if ((names[i - 1] as string) > (names[i] as string)) {
        names.sort();
        break;
      }
    }
    s = "{";
    for (let i = 0; i < names.length; i++) {
      const n = names[i] as string;
      s += `${i ? "," : ""}${n.length}:${n}=${encode(rec[n], stack)}`;
    }
    s += "}";
  }
  stack.pop();
  return s;
}

/**
 * The canonical string of a key that compares by value (array, plain object, Date), or undefined
 * for an object that keeps identity semantics. Equal keys give equal strings; the strings live in
 * their own Map in KeyedMap, so they never meet real string keys.
 */
export function structuralKey(k: object): string | undefined {
  if (Array.isArray(k) || isPlainObject(k)) return encode(k, []);
  return types.isDate(k) ? `D${Date.prototype.getTime.call(k)}` : undefined;
}

const same = <X>(x: X): X => x;

interface Slot<K, V> {
  /** The first key seen with this value: handed back in outputs. */
  k: K;
  v: V;
}

/** Tuples of primitives (the common `[word, 1]` key) skip string encoding: a trie of native Maps. */
type TrieNode = Map<unknown, unknown>;

/** A pair key's slot, with its second element kept beside it for the one-entry shortcut below. */
interface PairSlot<K, V> extends Slot<K, V> {
  b: unknown;
}

/**
 * The pairs level under one first element: the slot itself while only one second element was seen
 * (the `[word, 1]` case: one native lookup and a compare), a Map by second element once there are more.
 */
type PairEntry<K, V> = PairSlot<K, V> | Map<unknown, PairSlot<K, V>>;

/** SameValueZero, the equality of Map keys. */
const sameValueZero = (x: unknown, y: unknown): boolean => x === y || (x !== x && y !== y);

/** True for an array whose elements are all primitives (or functions): it can live in the trie. */
function isFlatTuple(k: object): k is unknown[] {
  if (!Array.isArray(k)) return false;
  for (let i = 0; i < k.length; i++) {
    const e: unknown = k[i];
    if (typeof e === "object" && e !== null) return false;
  }
  return true;
}

/**
 * A Map whose keys compare as keysEqual says. Primitive and identity keys go straight into a native
 * Map (no cost beyond one typeof); tuples of primitives go into a trie of native Maps, one level per
 * element (no string building); other value keys are stored by their canonical string in a third
 * Map, with the first-seen key object. Iteration visits the native Map's keys first, then the
 * value keys (tuples and the others together), each group in insertion order. Mutating while iterating is
 * safe as with a Map, except that a value key added during an iteration that began with none may
 * not be visited.
 */
export class KeyedMap<K, V> implements Iterable<[K, V]> {
  private direct = new Map<K, V>();
  private byValue = new Map<string, Slot<K, V>>();
  /** Tuple length -> trie whose last level holds the Slot (pairs have their own level, see PairEntry). */
  private tuples = new Map<number, TrieNode>();
  private pairs = new Map<unknown, PairEntry<K, V>>();
  /** Every value key's slot (trie or string-keyed) in insertion order, for iteration. */
  private valueSlots = new Set<Slot<K, V>>();

  constructor(entries?: Iterable<readonly [K, V]> | null) {
    if (entries) for (const [k, v] of entries) this.set(k, v);
  }

  get size(): number {
    return this.direct.size + this.valueSlots.size;
  }

  /** The trie slot of a flat tuple, created (with value v) when `create` and absent. */
  private tupleSlot(k: unknown[], create: boolean, v?: V): Slot<K, V> | undefined {
    const n = k.length;
    if (n === 2) {
      // Pairs (the common tuple key) skip the length level.
      const e = this.pairs.get(k[0]);
      const found = e === undefined ? undefined : e instanceof Map ? e.get(k[1]) : sameValueZero(e.b, k[1]) ? e : undefined;
      if (found !== undefined || !create) return found;
      const slot: PairSlot<K, V> = { k: k as K, v: v as V, b: k[1] };
      this.addPairSlot(k[0], e, slot);
      return slot;
    }
    let node = this.tuples.get(n);
    if (!node) {
      if (!create) return undefined;
      this.tuples.set(n, (node = new Map()));
    }
    if (n === 0) {
      let slot = node.get(undefined) as Slot<K, V> | undefined;
      if (!slot && create) {
        node.set(undefined, (slot = { k: k as K, v: v as V }));
        this.valueSlots.add(slot);
      }
      return slot;
    }
    for (let i = 0; i < n - 1; i++) {
      let next = node.get(k[i]) as TrieNode | undefined;
      if (!next) {
        if (!create) return undefined;
        node.set(k[i], (next = new Map()));
      }
      node = next;
    }
    let slot = node.get(k[n - 1]) as Slot<K, V> | undefined;
    if (!slot && create) {
      node.set(k[n - 1], (slot = { k: k as K, v: v as V }));
      this.valueSlots.add(slot);
    }
    return slot;
  }

  private deleteTuple(k: unknown[]): boolean {
    const n = k.length;
    if (n === 2) {
      const e = this.pairs.get(k[0]);
      if (e === undefined) return false;
      let slot: PairSlot<K, V> | undefined;
      if (e instanceof Map) {
        slot = e.get(k[1]);
        if (!slot) return false;
        e.delete(k[1]);
        if (e.size === 0) this.pairs.delete(k[0]);
      } else {
        if (!sameValueZero(e.b, k[1])) return false;
        slot = e;
        this.pairs.delete(k[0]);
      }
      this.valueSlots.delete(slot);
      return true;
    }
    let node = this.tuples.get(n);
    if (!node) return false;
    for (let i = 0; i < n - 1; i++) {
      node = node.get(k[i]) as TrieNode | undefined;
      if (!node) return false;
    }
    const last = n === 0 ? undefined : k[n - 1];
    const slot = node.get(last) as Slot<K, V> | undefined;
    if (!slot) return false;
    node.delete(last);
    this.valueSlots.delete(slot);
    return true;
  }

  get(k: K): V | undefined {
    if (typeof k !== "object" || k === null) return this.direct.get(k);
    if (isFlatTuple(k)) return this.tupleSlot(k, false)?.v;
    const e = structuralKey(k);
    return e === undefined ? this.direct.get(k) : this.byValue.get(e)?.v;
  }

  has(k: K): boolean {
    if (typeof k !== "object" || k === null) return this.direct.has(k);
    if (isFlatTuple(k)) return this.tupleSlot(k, false) !== undefined;
    const e = structuralKey(k);
    return e === undefined ? this.direct.has(k) : this.byValue.has(e);
  }

  set(k: K, v: V): this {
    if (typeof k !== "object" || k === null) {
      this.direct.set(k, v);
      return this;
    }
    if (isFlatTuple(k)) {
      const slot = this.tupleSlot(k, true, v) as Slot<K, V>;
      slot.v = v;
      return this;
    }
    const e = structuralKey(k);
    if (e === undefined) this.direct.set(k, v);
    else {
      const slot = this.byValue.get(e);
      if (slot) slot.v = v;
      else this.addValueSlot(e, { k, v });
    }
    return this;
  }

  delete(k: K): boolean {
    if (typeof k !== "object" || k === null) return this.direct.delete(k);
    if (isFlatTuple(k)) return this.deleteTuple(k);
    const e = structuralKey(k);
    if (e === undefined) return this.direct.delete(k);
    const slot = this.byValue.get(e);
    if (!slot) return false;
    this.byValue.delete(e);
    this.valueSlots.delete(slot);
    return true;
  }

  clear(): void {
    this.direct.clear();
    this.byValue.clear();
    this.tuples.clear();
    this.pairs.clear();
    this.valueSlots.clear();
  }

  /** Sets k to v when absent, else to f(current, v): reduceByKey's step, with one key lookup. */
  merge(k: K, v: V, f: (a: V, b: V) => V): void {
    if (typeof k !== "object" || k === null) {
      const d = this.direct;
      const prev = d.get(k);
      if (prev !== undefined) d.set(k, f(prev, v));
      else d.set(k, d.has(k) ? f(prev as V, v) : v);
      return;
    }
    if (Array.isArray(k) && k.length === 2) {
      // The hot case (reduceByKey on [word, n] keys), kept apart from combine so its call of f stays monomorphic.
      const a: unknown = k[0];
      const b: unknown = k[1];
      if ((typeof a !== "object" || a === null) && (typeof b !== "object" || b === null)) {
        const e = this.pairs.get(a);
        if (e !== undefined && !(e instanceof Map) && (e.b === b || (e.b !== e.b && b !== b))) {
          e.v = f(e.v, v);
          return;
        }
        const slot = e instanceof Map ? e.get(b) : undefined;
        if (slot !== undefined) slot.v = f(slot.v, v);
        else this.addPairSlot(a, e, { k, v, b });
        return;
      }
    }
    this.combineObject(k, v, same as (x: V) => V, f);
  }

  /** Sets k to create(x) when absent, else to mergeValue(current, x): combineByKey's step. */
  combine<X>(k: K, x: X, create: (x: X) => V, mergeValue: (c: V, x: X) => V): void {
    if (typeof k !== "object" || k === null) {
      const d = this.direct;
      const c = d.get(k);
      d.set(k, c === undefined && !d.has(k) ? create(x) : mergeValue(c as V, x));
      return;
    }
    this.combineObject(k, x, create, mergeValue);
  }

  private combineObject<X>(k: K & object, x: X, create: (x: X) => V, mergeValue: (c: V, x: X) => V): void {
    if (Array.isArray(k) && k.length === 2) {
      // The hot case (reduceByKey on [word, n] keys): usually one lookup, a compare and a field write.
      const a: unknown = k[0];
      const b: unknown = k[1];
      if ((typeof a !== "object" || a === null) && (typeof b !== "object" || b === null)) {
        const e = this.pairs.get(a);
        if (e !== undefined && !(e instanceof Map) && (e.b === b || (e.b !== e.b && b !== b))) {
          e.v = mergeValue(e.v, x);
          return;
        }
        const slot = e instanceof Map ? e.get(b) : undefined;
        if (slot !== undefined) slot.v = mergeValue(slot.v, x);
        else this.addPairSlot(a, e, { k: k as K, v: create(x), b });
        return;
      }
    }
    if (isFlatTuple(k)) {
      const slot = this.tupleSlot(k, false);
      if (slot) slot.v = mergeValue(slot.v, x);
      else this.tupleSlot(k, true, create(x));
      return;
    }
    const e = structuralKey(k);
    if (e === undefined) {
      const d = this.direct;
      const c = d.get(k);
      d.set(k, c === undefined && !d.has(k) ? create(x) : mergeValue(c as V, x));
      return;
    }
    const slot = this.byValue.get(e);
    if (slot) slot.v = mergeValue(slot.v, x);
    else this.addValueSlot(e, { k, v: create(x) });
  }

  /** Adds a new pair slot under first element a, whose entry was e (absent, one slot or a Map). */
  private addPairSlot(a: unknown, e: PairEntry<K, V> | undefined, slot: PairSlot<K, V>): void {
    if (e === undefined) this.pairs.set(a, slot);
    else if (e instanceof Map) e.set(slot.b, slot);
    else this.pairs.set(a, new Map<unknown, PairSlot<K, V>>([[e.b, e], [slot.b, slot]]));
    this.valueSlots.add(slot);
  }

  private addValueSlot(e: string, slot: Slot<K, V>): void {
    this.byValue.set(e, slot);
    this.valueSlots.add(slot);
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  private get onlyDirect(): boolean {
    return this.valueSlots.size === 0;
  }

  entries(): IterableIterator<[K, V]> {
    // With no value keys, the native iterator (the common case: string or number keys).
    return this.onlyDirect ? this.direct.entries() : this.allEntries();
  }

  private *allEntries(): IterableIterator<[K, V]> {
    yield* this.direct.entries();
    for (const s of this.valueSlots) yield [s.k, s.v];
  }

  keys(): IterableIterator<K> {
    return this.onlyDirect ? this.direct.keys() : this.allKeys();
  }

  private *allKeys(): IterableIterator<K> {
    yield* this.direct.keys();
    for (const s of this.valueSlots) yield s.k;
  }

  values(): IterableIterator<V> {
    return this.onlyDirect ? this.direct.values() : this.allValues();
  }

  private *allValues(): IterableIterator<V> {
    yield* this.direct.values();
    for (const s of this.valueSlots) yield s.v;
  }

  forEach(fn: (v: V, k: K) => void): void {
    for (const [k, v] of this.entries()) fn(v, k);
  }

  /** A copy that later changes to either map do not affect. */
  copy(): KeyedMap<K, V> {
    const c = new KeyedMap<K, V>();
    c.direct = new Map(this.direct);
    for (const s of this.valueSlots) c.set(s.k, s.v);
    return c;
  }

  /** A plain Map of the same pairs (for users: value keys are deduplicated, each the first-seen object). */
  toMap(): Map<K, V> {
    return new Map(this.entries());
  }
}

/** A set of keys compared as keysEqual says (distinct, subtractByKey, joins). */
export class KeyedSet<K> implements Iterable<K> {
  private readonly m = new KeyedMap<K, true>();

  get size(): number {
    return this.m.size;
  }

  add(k: K): this {
    this.m.set(k, true);
    return this;
  }

  has(k: K): boolean {
    return this.m.has(k);
  }

  delete(k: K): boolean {
    return this.m.delete(k);
  }

  [Symbol.iterator](): IterableIterator<K> {
    return this.m.keys();
  }
}
