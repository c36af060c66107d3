// The built-ins the kernel's own code relies on, captured when the kernel loads, as Node's primordials
// are. Cells share the kernel's realm, so a cell may replace JSON, Map, Array.prototype.push... for
// everyone; the kernel then keeps working: its asynchronous plumbing calls the captured functions, its
// synchronous work (wire, type checking, error reports) runs with the originals put back for its
// duration (withOriginals), and a failing cell's error names what the session replaced.
/* eslint-disable @typescript-eslint/unbound-method */

const { bind, call } = Function.prototype;
/** `uncurryThis(Array.prototype.push)(array, x)`: calls the captured method, whatever the prototype holds now. */
const uncurryThis = bind.bind(call) as <T, A extends unknown[], R>(fn: (this: T, ...args: A) => R) => (self: T, ...args: A) => R;

export const ReflectApply = Reflect.apply;
const ReflectDeleteProperty = Reflect.deleteProperty;
export const ObjectDefineProperty = Object.defineProperty;
export const ObjectGetOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
export const ObjectGetOwnPropertyNames = Object.getOwnPropertyNames;
export const ObjectGetOwnPropertySymbols = Object.getOwnPropertySymbols;
export const ObjectHasOwn = Object.hasOwn;
export const ObjectKeys = Object.keys;
export const ObjectFreeze = Object.freeze;
export const JSONParse = JSON.parse;
export const JSONStringify = JSON.stringify;
export const DateNow = Date.now;
export const ArrayIsArray = Array.isArray;
export const ArrayPrototypePush = uncurryThis(Array.prototype.push) as <T>(array: T[], ...items: T[]) => number;
export const ArrayPrototypeShift = uncurryThis(Array.prototype.shift) as <T>(array: T[]) => T | undefined;
export const ArrayPrototypeSlice = uncurryThis(Array.prototype.slice) as <T>(array: readonly T[], start?: number, end?: number) => T[];
export const ArrayPrototypeJoin = uncurryThis(Array.prototype.join) as (array: readonly unknown[], separator?: string) => string;
export const StringPrototypeSplit = uncurryThis(String.prototype.split as (this: string, separator: string) => string[]);
export const StringPrototypeReplace = uncurryThis(String.prototype.replace as (this: string, pattern: RegExp | string, replacement: string) => string);
export const RegExpPrototypeExec = uncurryThis(RegExp.prototype.exec);
export const FunctionPrototypeCall = uncurryThis(call as (this: (...args: unknown[]) => unknown, thisArg: unknown, ...args: unknown[]) => unknown);

/** The realm's Promise, and `then` that ignores what Promise.prototype.then holds now. */
export const KernelPromise = Promise;
const promiseThen = uncurryThis(Promise.prototype.then) as <T, R>(promise: Promise<T>, onFulfilled?: (value: T) => R, onRejected?: (reason: unknown) => R) => Promise<R>;
export const PromisePrototypeThen = promiseThen;

export const PromiseResolve = Promise.resolve.bind(Promise) as <T>(value: T) => Promise<Awaited<T>>;
export const PromiseReject = Promise.reject.bind(Promise) as (reason: unknown) => Promise<never>;

/** Promise.all without looking anything up on Promise or its prototype. */
export function SafePromiseAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  return new KernelPromise<T[]>((resolve, reject) => {
    const results: T[] = [];
    let left = promises.length;
    if (left === 0) resolve(results);
    for (let i = 0; i < promises.length; i++) {
      promiseThen(promises[i], (value) => {
        results[i] = value;
        if (--left === 0) resolve(results);
      }, reject);
    }
  });
}

/** Promise.race without looking anything up on Promise or its prototype. */
export function SafePromiseRace<T>(promises: readonly Promise<T>[]): Promise<T> {
  return new KernelPromise<T>((resolve, reject) => {
    for (let i = 0; i < promises.length; i++) promiseThen(promises[i], resolve, reject);
  });
}

// Timers: a cell may declare its own setTimeout for the whole realm (see the README).
export const KernelSetTimeout = setTimeout;
export const KernelClearTimeout = clearTimeout;
export const KernelSetImmediate = setImmediate;

const KernelDate = Date;
const dateToISOString = uncurryThis(Date.prototype.toISOString);
/** The current time as an ISO string (message headers). */
export function DateNowISOString(): string {
  return dateToISOString(new KernelDate());
}

const KernelBuffer = Buffer;
export const BufferFrom = KernelBuffer.from.bind(KernelBuffer) as typeof Buffer.from;
export const BufferPrototypeEquals = uncurryThis(Buffer.prototype.equals) as (a: Buffer, b: Uint8Array) => boolean;

const ObjectPrototype = Object.prototype;
const ArrayPrototype = Array.prototype;

/**
 * JSON.stringify as the kernel needs it for its own messages: a toJSON a cell put on Object.prototype
 * or Array.prototype (which every object or array would inherit) is set aside while it runs.
 */
export function JSONStringifyPlain(value: unknown): string {
  const onObjects = ObjectHasOwn(ObjectPrototype, "toJSON") ? ObjectGetOwnPropertyDescriptor(ObjectPrototype, "toJSON") : undefined;
  const onArrays = ObjectHasOwn(ArrayPrototype, "toJSON") ? ObjectGetOwnPropertyDescriptor(ArrayPrototype, "toJSON") : undefined;
  if (onObjects === undefined && onArrays === undefined) return JSONStringify(value);
  if (onObjects?.configurable) ReflectDeleteProperty(ObjectPrototype, "toJSON");
  if (onArrays?.configurable) ReflectDeleteProperty(ArrayPrototype, "toJSON");
  try {
    return JSONStringify(value);
  } finally {
    if (onObjects?.configurable) ObjectDefineProperty(ObjectPrototype, "toJSON", onObjects);
    if (onArrays?.configurable) ObjectDefineProperty(ArrayPrototype, "toJSON", onArrays);
  }
}

/**
 * A Map whose methods are own copies of the originals (Node's SafeMap): replacing Map or
 * Map.prototype.get in a cell does not reach it. Iteration goes through the copied iterator methods.
 */
export class SafeMap<K, V> extends Map<K, V> {}
export class SafeSet<T> extends Set<T> {}
for (const [Safe, Original] of [[SafeMap, Map], [SafeSet, Set]] as const) {
  for (const key of [...ObjectGetOwnPropertyNames(Original.prototype), ...ObjectGetOwnPropertySymbols(Original.prototype)]) {
    if (key === "constructor") continue;
    const descriptor = ObjectGetOwnPropertyDescriptor(Original.prototype, key)!;
    ObjectDefineProperty(Safe.prototype, key, descriptor);
  }
  ObjectFreeze(Safe.prototype);
}

// ---------------------------------------------------------------------------------------------
// Which built-ins a cell replaced, and putting the originals back for a synchronous stretch.

interface Intrinsic {
  /** How a user writes it: `JSON`, `Array.prototype.push`. */
  name: string;
  owner: Record<PropertyKey, unknown>;
  key: PropertyKey;
  /** The value a plain read gave at start: compared with a plain read, no allocation (this runs on every message). */
  value: unknown;
  original: PropertyDescriptor;
}

const GLOBALS = [
  "Object", "Function", "Array", "String", "Number", "Boolean", "Symbol", "BigInt", "Date", "RegExp", "Error", "TypeError",
  "RangeError", "SyntaxError", "Map", "Set", "WeakMap", "WeakSet", "WeakRef", "Promise", "JSON", "Math", "Reflect", "Proxy",
  "Buffer", "ArrayBuffer", "SharedArrayBuffer", "Uint8Array", "Int32Array", "Float64Array", "DataView", "Atomics",
  "TextEncoder", "TextDecoder", "URL", "URLSearchParams", "queueMicrotask", "structuredClone", "parseInt", "parseFloat",
  "isNaN", "isFinite", "encodeURIComponent", "decodeURIComponent", "globalThis",
] as const;

/**
 * Constructors and namespaces whose own functions (and prototype methods) the kernel and the libraries it
 * runs (TypeScript, util.inspect, zeromq) rely on; for some, only the members listed (every check costs).
 */
type Members = readonly [name: string, statics?: readonly string[], methods?: readonly string[]];
const WITH_MEMBERS: readonly Members[] = [
  ["Object"], ["Function"], ["Array"], ["String"], ["Number"], ["Boolean"], ["Symbol"], ["RegExp"], ["Error"], ["Map"], ["Set"],
  ["WeakMap"], ["WeakSet"], ["Promise"], ["JSON"], ["Reflect"],
  ["Math", ["max", "min", "floor", "ceil", "round", "abs", "random", "trunc", "pow", "log", "sqrt"]],
  ["Date", ["now", "parse", "UTC"], ["toISOString", "getTime", "valueOf", "toString", "toJSON"]],
  ["Buffer", ["from", "alloc", "allocUnsafe", "concat", "isBuffer", "byteLength"], ["toString", "equals", "slice", "subarray", "write", "readInt32LE", "copy"]],
];

function snapshot(): Intrinsic[] {
  const list: Intrinsic[] = [];
  const add = (name: string, owner: object, key: PropertyKey): void => {
    const found = ObjectGetOwnPropertyDescriptor(owner, key);
    if (found === undefined) return;
    if ("value" in found) {
      ArrayPrototypePush(list, { name, owner: owner as Record<PropertyKey, unknown>, key, value: found.value, original: found });
    } else if (found.get !== undefined && found.configurable) {
      // Node exposes some globals (Buffer, TextEncoder) through a getter and setter: what counts is the
      // value read now, and putting it back means a plain data property holding it.
      const value = (owner as Record<PropertyKey, unknown>)[key as string];
      const original = { value, writable: true, enumerable: found.enumerable, configurable: true };
      ArrayPrototypePush(list, { name, owner: owner as Record<PropertyKey, unknown>, key, value, original });
    }
  };
  const members = (prefix: string, owner: object, only?: readonly string[]): void => {
    const keys = only ?? [...ObjectGetOwnPropertyNames(owner), ...ObjectGetOwnPropertySymbols(owner)];
    for (const key of keys) {
      if (key === "prototype" || key === "constructor" || key === "length" || key === "name" || key === "caller" || key === "arguments") continue;
      const d = ObjectGetOwnPropertyDescriptor(owner, key);
      if (d === undefined || typeof d.value !== "function") continue;
      add(`${prefix}.${typeof key === "symbol" ? `[${key.description ?? "symbol"}]` : key}`, owner, key);
    }
  };
  const g = globalThis as unknown as Record<string, object>;
  for (const name of GLOBALS) add(name, globalThis, name);
  for (const [name, statics, methods] of WITH_MEMBERS) {
    const value = g[name];
    if (value === undefined) continue;
    members(name, value, statics);
    const proto = (value as { prototype?: object }).prototype;
    if (typeof value === "function" && proto) members(`${name}.prototype`, proto, methods);
  }
  // The iterators behind for...of and spread.
  const iterators: [string, object][] = [
    ["Array Iterator", Object.getPrototypeOf([][Symbol.iterator]())],
    ["Map Iterator", Object.getPrototypeOf(new Map()[Symbol.iterator]())],
    ["Set Iterator", Object.getPrototypeOf(new Set()[Symbol.iterator]())],
    ["String Iterator", Object.getPrototypeOf(""[Symbol.iterator]())],
  ];
  for (const [name, proto] of iterators) add(`${name}.next`, proto, "next");
  return list;
}

const intrinsics = snapshot();

/**
 * One generated comparison per owner object (`o[k[0]] === v[0] && ...`): each property read is its own
 * monomorphic site, so checking all ~470 built-ins costs about a microsecond. withOriginals runs it on
 * every message the kernel sends.
 */
function compileCleanCheck(): () => boolean {
  const byOwner = new SafeMap<object, Intrinsic[]>();
  for (let i = 0; i < intrinsics.length; i++) {
    const group = byOwner.get(intrinsics[i].owner);
    if (group) ArrayPrototypePush(group, intrinsics[i]);
    else byOwner.set(intrinsics[i].owner, [intrinsics[i]]);
  }
  const checks: (() => boolean)[] = [];
  for (const [owner, group] of byOwner) {
    const keys = group.map((e) => e.key);
    const values = group.map((e) => e.value);
    // Named reads where the key is a string (V8 caches them best), keyed reads for symbols.
    const body = keys.map((key, i) => `${typeof key === "string" ? `o[${JSONStringify(key)}]` : `o[k[${i}]]`} === v[${i}]`).join(" && ");
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    const check = new Function("o", "k", "v", `return ${body};`) as (o: object, k: PropertyKey[], v: unknown[]) => boolean;
    ArrayPrototypePush(checks, () => check(owner, keys, values));
  }
  const objectPrototype = Object.prototype;
  return () => {
    for (let i = 0; i < checks.length; i++) if (!checks[i]()) return false;
    // Additions to Object.prototype: toJSON is the one the kernel's own JSON would meet (then is guarded).
    return !ObjectHasOwn(objectPrototype, "toJSON");
  };
}

const allOriginal = compileCleanCheck();

/** True while no cell has replaced a built-in the kernel knows (a fast check: about 20 µs). */
export function builtinsIntact(): boolean {
  return allOriginal();
}
/** Object.prototype's own keys at start: a key added later (then, toJSON) changes every object. */
const objectPrototypeKeys = new SafeSet<PropertyKey>([...ObjectGetOwnPropertyNames(Object.prototype), ...ObjectGetOwnPropertySymbols(Object.prototype)]);

interface Change {
  owner: object;
  key: PropertyKey;
  /** What the kernel needs there; undefined for a key a cell added. */
  original: PropertyDescriptor | undefined;
  /** What a cell put there; undefined when it deleted it. */
  current: PropertyDescriptor | undefined;
  name: string;
}

function changes(): Change[] {
  const found: Change[] = [];
  for (let i = 0; i < intrinsics.length; i++) {
    const { owner, key, value, original, name } = intrinsics[i];
    if (owner[key as string] === value && ObjectHasOwn(owner, key)) continue;
    ArrayPrototypePush(found, { owner, key, original, current: ObjectGetOwnPropertyDescriptor(owner, key), name });
  }
  const keys = ObjectGetOwnPropertyNames(Object.prototype);
  for (let i = 0; i < keys.length; i++) {
    if (!objectPrototypeKeys.has(keys[i])) {
      ArrayPrototypePush(found, { owner: Object.prototype, key: keys[i], original: undefined, current: ObjectGetOwnPropertyDescriptor(Object.prototype, keys[i]), name: `Object.prototype.${keys[i]}` });
    }
  }
  return found;
}

/** Built-ins that differ from what the kernel started with (replaced, deleted, or added to Object.prototype). */
export function replacedBuiltins(): string[] {
  const found = changes();
  const names: string[] = [];
  for (let i = 0; i < found.length; i++) ArrayPrototypePush(names, found[i].name);
  return names;
}

function put(owner: object, key: PropertyKey, descriptor: PropertyDescriptor | undefined): boolean {
  try {
    if (descriptor) ObjectDefineProperty(owner, key, descriptor);
    else ReflectDeleteProperty(owner, key);
    return true;
  } catch {
    return false; // a cell made it non-configurable: the kernel has to live with it
  }
}

/**
 * Runs `fn` (synchronous) with the built-ins as the kernel found them, then puts the session's
 * replacements back. No user code runs meanwhile, unless `fn` calls it (e.g. a user's toString).
 */
export function withOriginals<T>(fn: () => T): T {
  if (allOriginal()) return fn();
  const found = changes();
  if (found.length === 0) return fn();
  const swapped: Change[] = [];
  for (let i = 0; i < found.length; i++) if (put(found[i].owner, found[i].key, found[i].original)) ArrayPrototypePush(swapped, found[i]);
  try {
    return fn();
  } finally {
    for (let i = swapped.length - 1; i >= 0; i--) put(swapped[i].owner, swapped[i].key, swapped[i].current);
  }
}

/** Wraps a function so that each call runs withOriginals. */
export function protect<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  return (...args: A): R => withOriginals(() => fn(...args));
}

/**
 * Built-ins Node.js itself looks up as it runs (every EventEmitter.emit calls `handler.apply`; process
 * signals and uncaught exceptions go through it): replaced, they would take the kernel down with the
 * next event. The kernel puts these back at every occasion it gets and says so.
 */
const arrayIteratorPrototype = Object.getPrototypeOf([][Symbol.iterator]()) as Record<PropertyKey, unknown>;
const VITAL: readonly [string, Record<PropertyKey, unknown>, PropertyKey][] = [
  // for...of and spread over arrays, in Node's own modules as much as anywhere.
  ["Array.prototype[Symbol.iterator]", Array.prototype as unknown as Record<PropertyKey, unknown>, Symbol.iterator],
  ["Array Iterator.next", arrayIteratorPrototype, "next"],
  ["Function.prototype.apply", Function.prototype as unknown as Record<string, unknown>, "apply"],
  ["Function.prototype.call", Function.prototype as unknown as Record<string, unknown>, "call"],
  ["Function.prototype.bind", Function.prototype as unknown as Record<string, unknown>, "bind"],
  // Resolving any promise with another one looks up its then: a replaced then leaves them pending forever.
  ["Promise.prototype.then", Promise.prototype as unknown as Record<string, unknown>, "then"],
  // Node's own modules share this Buffer object with the global one (crypto, streams, fs call these).
  ["Buffer.from", Buffer as unknown as Record<string, unknown>, "from"],
  ["Buffer.alloc", Buffer as unknown as Record<string, unknown>, "alloc"],
  ["Buffer.allocUnsafe", Buffer as unknown as Record<string, unknown>, "allocUnsafe"],
  ["Buffer.concat", Buffer as unknown as Record<string, unknown>, "concat"],
  ["Buffer.byteLength", Buffer as unknown as Record<string, unknown>, "byteLength"],
  ["Buffer.isBuffer", Buffer as unknown as Record<string, unknown>, "isBuffer"],
];
const vitalOriginals = VITAL.map((vital) => ObjectGetOwnPropertyDescriptor(vital[1], vital[2])!);

let healed: string[] = [];

/** Puts back the vital built-ins a cell replaced (three reads when none was: call it often). */
export function healVitalBuiltins(): void {
  for (let i = 0; i < VITAL.length; i++) {
    // No destructuring here: it would go through the array iterator this may be about to put back.
    const vital = VITAL[i];
    const owner = vital[1];
    const key = vital[2];
    if (owner[key as string] !== vitalOriginals[i].value && put(owner, key, vitalOriginals[i])) ArrayPrototypePush(healed, vital[0]);
  }
}

/** The vital built-ins put back since the last call, to tell the user. */
export function takeHealedBuiltins(): string[] {
  const taken = healed;
  healed = [];
  return taken;
}

export class ThenOnObjectPrototypeRefusedError extends TypeError {
  override name = "ThenOnObjectPrototypeRefusedError";
}

/**
 * `Object.prototype.then` would make every object a thenable: each `await` of an object, and each
 * async function returning one, would call it, and the kernel's own requests would never finish. So
 * the kernel process holds that key with an accessor: reading gives undefined, as before; assigning
 * `then` on an ordinary object still makes an own property; defining it on Object.prototype is refused.
 */
export function guardObjectPrototypeThen(): void {
  if (ObjectGetOwnPropertyDescriptor(Object.prototype, "then")) return;
  ObjectDefineProperty(Object.prototype, "then", {
    configurable: false,
    enumerable: false,
    get: () => undefined,
    set(this: unknown, value: unknown) {
      if (this === Object.prototype) {
        throw new ThenOnObjectPrototypeRefusedError("Object.prototype.then is refused: it would turn every object into a promise-like and hang the kernel; give your own class a then() method instead");
      }
      ObjectDefineProperty(this as object, "then", { value, writable: true, enumerable: true, configurable: true });
    },
  });
  objectPrototypeKeys.add("then");
}
