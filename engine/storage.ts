// Spark's StorageLevel names, accepted by persist(level). Everything lives in one Node process's
// memory here, so every level means "kept in memory, deserialised"; the flags are kept for display.

import { IllegalArgumentError } from "./errors.js";

export type StorageLevelName =
  | "NONE"
  | "DISK_ONLY"
  | "DISK_ONLY_2"
  | "DISK_ONLY_3"
  | "MEMORY_ONLY"
  | "MEMORY_ONLY_2"
  | "MEMORY_ONLY_SER"
  | "MEMORY_ONLY_SER_2"
  | "MEMORY_AND_DISK"
  | "MEMORY_AND_DISK_2"
  | "MEMORY_AND_DISK_SER"
  | "MEMORY_AND_DISK_SER_2"
  | "OFF_HEAP";

export class StorageLevel {
  private constructor(
    readonly name: StorageLevelName,
    readonly useDisk: boolean,
    readonly useMemory: boolean,
    readonly useOffHeap: boolean,
    readonly deserialized: boolean,
    readonly replication: number,
  ) {}

  static readonly NONE = new StorageLevel("NONE", false, false, false, false, 1);
  static readonly DISK_ONLY = new StorageLevel("DISK_ONLY", true, false, false, false, 1);
  static readonly DISK_ONLY_2 = new StorageLevel("DISK_ONLY_2", true, false, false, false, 2);
  static readonly DISK_ONLY_3 = new StorageLevel("DISK_ONLY_3", true, false, false, false, 3);
  static readonly MEMORY_ONLY = new StorageLevel("MEMORY_ONLY", false, true, false, true, 1);
  static readonly MEMORY_ONLY_2 = new StorageLevel("MEMORY_ONLY_2", false, true, false, true, 2);
  static readonly MEMORY_ONLY_SER = new StorageLevel("MEMORY_ONLY_SER", false, true, false, false, 1);
  static readonly MEMORY_ONLY_SER_2 = new StorageLevel("MEMORY_ONLY_SER_2", false, true, false, false, 2);
  static readonly MEMORY_AND_DISK = new StorageLevel("MEMORY_AND_DISK", true, true, false, true, 1);
  static readonly MEMORY_AND_DISK_2 = new StorageLevel("MEMORY_AND_DISK_2", true, true, false, true, 2);
  static readonly MEMORY_AND_DISK_SER = new StorageLevel("MEMORY_AND_DISK_SER", true, true, false, false, 1);
  static readonly MEMORY_AND_DISK_SER_2 = new StorageLevel("MEMORY_AND_DISK_SER_2", true, true, false, false, 2);
  static readonly OFF_HEAP = new StorageLevel("OFF_HEAP", true, true, true, false, 1);

  /** Spark's StorageLevel.fromString: the level of that name; throws for an unknown name. */
  static fromString(name: string): StorageLevel {
    const l = (StorageLevel as unknown as Record<string, unknown>)[name];
    if (!(l instanceof StorageLevel)) {
      throw new IllegalArgumentError(`Invalid StorageLevel: ${name} (use one of NONE, MEMORY_ONLY, MEMORY_ONLY_SER, MEMORY_AND_DISK, DISK_ONLY, OFF_HEAP, ... with _2 for replication)`);
    }
    return l;
  }

  get isValid(): boolean {
    return (this.useMemory || this.useDisk) && this.replication > 0;
  }

  toString(): string {
    return `StorageLevel(${this.name})`;
  }
}
