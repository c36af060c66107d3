// Spark's broadcast variables: a read-only value shared by every task. Here every task runs in this
// process, so the value is simply held; what remains of Spark is the lifecycle (unpersist, destroy).

import { BroadcastDestroyedError } from "../errors.js";

let nextBroadcastId = 0;

export class Broadcast<T> {
  readonly id = nextBroadcastId++;
  private current: T | undefined;
  private destroyedAt?: string;

  /** Internal: made by sc.broadcast(value). */
  constructor(value: T) {
    this.current = value;
  }

  /** The broadcast value; throws BroadcastDestroyedError after destroy(), as Spark does. */
  get value(): T {
    this.assertValid();
    return this.current as T;
  }

  /**
   * Spark drops the executors' copies and re-sends the value when it is used again. With one
   * process there are no copies: the value stays readable, as in Spark.
   */
  unpersist(_blocking = false): void {
    this.assertValid();
  }

  /** Releases the value for good; any later use throws. */
  destroy(_blocking = false): void {
    this.assertValid();
    this.destroyedAt = new Error().stack?.split("\n")[2]?.trim() ?? "unknown";
    this.current = undefined;
  }

  /** Spark's isValid: false once destroyed. */
  get isValid(): boolean {
    return this.destroyedAt === undefined;
  }

  private assertValid(): void {
    if (this.destroyedAt !== undefined) {
      throw new BroadcastDestroyedError(
        `Attempted to use ${this} after it was destroyed (${this.destroyedAt}); create a new one with sc.broadcast(value), e.g. from a lazily re-created singleton`,
      );
    }
  }

  toString(): string {
    return `Broadcast(${this.id})`;
  }
}
