// The cell context: which execution a piece of running code belongs to. AsyncLocalStorage carries it
// through timers, promises and callbacks, so late output goes to the cell that caused it (nel/IJavascript).
import { AsyncLocalStorage } from "node:async_hooks";
import type { OutputSink } from "./interpreter.js";

export interface CellContext {
  /** Where this cell's output goes; stays valid after the cell's execute_reply (IOPub parent is that request). */
  sink: OutputSink;
  /** The frontend's cell id, when it sends one. */
  cellId?: string;
  executionCount: number;
  /** Asks the frontend for a line of input (stdin channel). */
  input(prompt: string, password: boolean): Promise<string>;
}

const storage = new AsyncLocalStorage<CellContext>();

/** The cell whose code is running now (synchronously or in a callback it scheduled), if any. */
export function currentCell(): CellContext | undefined {
  return storage.getStore();
}

/** Runs `fn` as part of `cell`: output and errors from everything it schedules go to that cell. */
export function runInCell<T>(cell: CellContext, fn: () => T): T {
  return storage.run(cell, fn);
}

/** Runs `fn` outside any cell (kernel housekeeping whose callbacks must not inherit a cell). */
export function runOutsideCells<T>(fn: () => T): T {
  return storage.exit(fn);
}
