// Record keys compared by value, as Spark compares Python tuples and Scala case classes: the one
// place where the engine decides when two keys are "the same" (grouping, joins, state, windows).

import { types } from "node:util";
import { CHUNK, runSync, type Sliced } from "./slicing.js";

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

/**
 * The copy of a pair key [a, b] that a merge keeps. A shuffle keeps one key per distinct key: a small
 * share of the tuples the user's code allocates (`[[word, 1], 1]` in a map). V8 then judges that
 * allocation site long-lived and allocates all its tuples in the old space (allocation-site
 * pretenuring), and each scavenge then walks them all: a word count on tuple keys ran 2-3x slower. A
 * copy made here leaves the user's site short-lived. Merges copy; set() keeps the caller's object.
 */
export function keptPair<K>(a: unknown, b: unknown): K {
  return [a, b] as K;
}

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
 * Native keys one Map holds before new ones spill into shards. A native Map grows by rehashing its
 * whole table in one step: past 2^19 keys that step holds the event loop 60-170 ms, which no slicing
 * can split. Shards of a large map stay small, so each of their rehashes is short.
 */
const DIRECT_CAP = 1 << 16;
const SHARD_BITS = 7;
const SHARDS = 1 << SHARD_BITS;

/**
 * Hash bits (14 of them) -> shard, with shard i taking a share ~2^(i/SHARDS) of the keys: shards of
 * equal shares would all grow past the same size in the same few thousand inserts, and their 128
 * small rehashes would add up to the one long pause the shards are there to avoid. Shares spread
 * over an octave spread those rehashes evenly over the time the map takes to double.
 */
const SHARD_TABLE = (() => {
  const slots = 1 << 14;
  const weights = Array.from({ length: SHARDS }, (_, i) => 2 ** (i / SHARDS));
  const total = weights.reduce((a, b) => a + b, 0);
  const table = new Uint8Array(slots);
  let at = 0;
  let acc = 0;
  for (let i = 0; i < SHARDS; i++) {
    acc += weights[i] as number;
    const end = i === SHARDS - 1 ? slots : Math.round((acc / total) * slots);
    table.fill(i, at, end);
    at = end;
  }
  return table;
})();

/** The spill shard of a native key: any function of the key works, as long as equal keys agree. */
function shardOf(k: unknown): number {
  let h: number;
  if (typeof k === "number") {
    h = k | 0;
    // Not an int32 (a fraction, a large id, NaN): mix its high part and its fraction (NaN and ±Infinity give 0).
    if (h !== k) h = ((k % 2147483647) | 0) ^ (((k % 1) * 2147483647) | 0);
  } else if (typeof k === "string") {
    // A few characters, not the whole string: ids and words vary at their ends and middle.
    const n = k.length;
    h = n;
    if (n > 0) h = Math.imul(h ^ k.charCodeAt(n - 1), 0x01000193);
    if (n > 1) h = Math.imul(h ^ k.charCodeAt(n - 2), 0x01000193);
    if (n > 2) h = Math.imul(h ^ k.charCodeAt(n >> 1), 0x01000193) ^ k.charCodeAt(0);
  } else return 0; // booleans, bigints, symbols, identity objects: rare as the millionth key
  return SHARD_TABLE[Math.imul(h, 0x9e3779b1) >>> 18] as number;
}

/** Iterates several iterators one after the other (cheaper per step than a generator's yield*). */
class ChainedIterator<T> implements IterableIterator<T> {
  private i = 0;
  constructor(private readonly parts: Iterator<T>[]) {}
  next(): IteratorResult<T> {
    const parts = this.parts;
    while (this.i < parts.length) {
      const r = (parts[this.i] as Iterator<T>).next();
      if (!r.done) return r;
      this.i++;
    }
    return { done: true, value: undefined };
  }
  [Symbol.iterator](): IterableIterator<T> {
    return this;
  }
}

/**
 * A Map whose keys compare as keysEqual says. Primitive and identity keys go straight into a native
 * Map (no cost beyond one typeof); tuples of primitives go into a trie of native Maps, one level per
 * element (no string building); other value keys are stored by their canonical string in a third
 * Map, with the first-seen key object. Iteration visits the native Map's keys first, then the
 * value keys (tuples and the others together), each group in insertion order. Mutating while iterating is
 * safe as with a Map, except that a value key added during an iteration that began with none may
 * not be visited, and neither may a key added to a large map's spill shard the iteration has passed.
 * A map past DIRECT_CAP native keys keeps the newer ones in shards (spill): they iterate after the
 * first DIRECT_CAP, shard by shard.
 */
export class KeyedMap<K, V> implements Iterable<[K, V]> {
  private direct = new Map<K, V>();
  /** Native keys added once `direct` held DIRECT_CAP of them, by shardOf (undefined until then). */
  private spill: Map<K, V>[] | undefined;
  private spilled = 0;
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
    return this.direct.size + this.spilled + this.valueSlots.size;
  }

  // ---- native keys: `direct`, then the spill shards --------------------------------------------

  private nativeGet(k: K): V | undefined {
    const v = this.direct.get(k);
    if (v !== undefined || this.spill === undefined) return v;
    return (this.spill[shardOf(k)] as Map<K, V>).get(k);
  }

  private nativeHas(k: K): boolean {
    return this.direct.has(k) || (this.spill !== undefined && (this.spill[shardOf(k)] as Map<K, V>).has(k));
  }

  private nativeSet(k: K, v: V): void {
    const d = this.direct;
    if ((this.spill === undefined && d.size < DIRECT_CAP) || d.has(k)) d.set(k, v);
    else this.spillSet(k, v);
  }

  /** Sets a native key that is not in `direct` (and cannot go there any more). */
  private spillSet(k: K, v: V): void {
    const spill = (this.spill ??= Array.from({ length: SHARDS }, () => new Map<K, V>()));
    const shard = spill[shardOf(k)] as Map<K, V>;
    const n = shard.size;
    shard.set(k, v);
    this.spilled += shard.size - n;
  }

  /** merge/combine for a native key absent from `direct` and, when there is no spill yet, from the map. */
  private spillCombine<X>(k: K, x: X, create: (x: X) => V, mergeValue: (c: V, x: X) => V): void {
    if (this.spill === undefined && this.direct.size < DIRECT_CAP) {
      this.direct.set(k, create(x));
      return;
    }
    const spill = (this.spill ??= Array.from({ length: SHARDS }, () => new Map<K, V>()));
    const shard = spill[shardOf(k)] as Map<K, V>;
    const c = shard.get(k);
    if (c !== undefined || shard.has(k)) shard.set(k, mergeValue(c as V, x));
    else {
      shard.set(k, create(x));
      this.spilled++;
    }
  }

  private nativeDelete(k: K): boolean {
    if (this.direct.delete(k)) return true;
    if (this.spill === undefined || !(this.spill[shardOf(k)] as Map<K, V>).delete(k)) return false;
    this.spilled--;
    return true;
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
    if (typeof k !== "object" || k === null) {
      const v = this.direct.get(k);
      return v !== undefined || this.spill === undefined ? v : this.nativeGet(k);
    }
    if (isFlatTuple(k)) return this.tupleSlot(k, false)?.v;
    const e = structuralKey(k);
    return e === undefined ? this.nativeGet(k) : this.byValue.get(e)?.v;
  }

  has(k: K): boolean {
    if (typeof k !== "object" || k === null) return this.direct.has(k) || (this.spill !== undefined && this.nativeHas(k));
    if (isFlatTuple(k)) return this.tupleSlot(k, false) !== undefined;
    const e = structuralKey(k);
    return e === undefined ? this.nativeHas(k) : this.byValue.has(e);
  }

  set(k: K, v: V): this {
    if (typeof k !== "object" || k === null) {
      this.nativeSet(k, v);
      return this;
    }
    if (isFlatTuple(k)) {
      const slot = this.tupleSlot(k, true, v) as Slot<K, V>;
      slot.v = v;
      return this;
    }
    const e = structuralKey(k);
    if (e === undefined) this.nativeSet(k, v);
    else {
      const slot = this.byValue.get(e);
      if (slot) slot.v = v;
      else this.addValueSlot(e, { k, v });
    }
    return this;
  }

  delete(k: K): boolean {
    if (typeof k !== "object" || k === null) return this.nativeDelete(k);
    if (isFlatTuple(k)) return this.deleteTuple(k);
    const e = structuralKey(k);
    if (e === undefined) return this.nativeDelete(k);
    const slot = this.byValue.get(e);
    if (!slot) return false;
    this.byValue.delete(e);
    this.valueSlots.delete(slot);
    return true;
  }

  clear(): void {
    this.direct.clear();
    this.spill = undefined;
    this.spilled = 0;
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
      else if (d.has(k)) d.set(k, f(prev as V, v));
      else if (this.spill === undefined && d.size < DIRECT_CAP) d.set(k, v);
      else this.spillCombine(k, v, same as (x: V) => V, f);
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
        else this.addPairSlot(a, e, { k: keptPair<K>(a, b), v, b });
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
      if (c !== undefined || d.has(k)) d.set(k, mergeValue(c as V, x));
      else this.spillCombine(k, x, create, mergeValue);
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
        else this.addPairSlot(a, e, { k: keptPair<K>(a, b), v: create(x), b });
        return;
      }
    }
    if (isFlatTuple(k)) {
      const slot = this.tupleSlot(k, false);
      if (slot) slot.v = mergeValue(slot.v, x);
      else this.tupleSlot(k.slice(), true, create(x));
      return;
    }
    const e = structuralKey(k);
    if (e === undefined) {
      const d = this.direct;
      const c = d.get(k);
      if (c !== undefined || d.has(k)) d.set(k, mergeValue(c as V, x));
      else this.spillCombine(k, x, create, mergeValue);
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
    return this.valueSlots.size === 0 && this.spill === undefined;
  }

  private chained<T>(native: (m: Map<K, V>) => Iterator<T>, slot: (s: Slot<K, V>) => T): IterableIterator<T> {
    const parts: Iterator<T>[] = [native(this.direct)];
    if (this.spill) for (const shard of this.spill) if (shard.size > 0) parts.push(native(shard));
    if (this.valueSlots.size > 0) parts.push(mapIterator(this.valueSlots.values(), slot));
    return new ChainedIterator(parts);
  }

  entries(): IterableIterator<[K, V]> {
    // With no value keys and no spill, the native iterator (the common case: string or number keys).
    return this.onlyDirect ? this.direct.entries() : this.chained((m) => m.entries(), (s) => [s.k, s.v] as [K, V]);
  }

  keys(): IterableIterator<K> {
    return this.onlyDirect ? this.direct.keys() : this.chained((m) => m.keys(), (s) => s.k);
  }

  values(): IterableIterator<V> {
    return this.onlyDirect ? this.direct.values() : this.chained((m) => m.values(), (s) => s.v);
  }

  forEach(fn: (v: V, k: K) => void): void {
    for (const [k, v] of this.entries()) fn(v, k);
  }

  /** A copy that later changes to either map do not affect. */
  copy(): KeyedMap<K, V> {
    return runSync(this.copySliced());
  }

  /** As copy(), yielding between shards and every chunk of value keys (a large map's copy holds the loop otherwise). */
  *copySliced(): Sliced<KeyedMap<K, V>> {
    const c = new KeyedMap<K, V>();
    c.direct = new Map(this.direct);
    if (this.spill) {
      const spill: Map<K, V>[] = [];
      for (const shard of this.spill) {
        spill.push(new Map(shard));
        yield;
      }
      c.spill = spill;
      c.spilled = this.spilled;
    }
    let n = 0;
    for (const s of this.valueSlots) {
      c.set(s.k, s.v);
      if ((++n & (CHUNK - 1)) === 0) yield;
    }
    return c;
  }

  /** A plain Map of the same pairs (for users: value keys are deduplicated, each the first-seen object). */
  toMap(): Map<K, V> {
    return new Map(this.entries());
  }
}

function* mapIterator<A, B>(it: Iterator<A>, f: (a: A) => B): IterableIterator<B> {
  for (let r = it.next(); !r.done; r = it.next()) yield f(r.value);
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
