// Clocks: the system clock (wall time) and a manual clock that tests and notebooks advance by hand.

export interface Clock {
  readonly kind: "system" | "manual";
  now(): number;
}

export class SystemClock implements Clock {
  readonly kind = "system" as const;
  now(): number {
    return Date.now();
  }
}

/** Starts at 0 and moves only when told; the context's advance(ms) moves it and runs the batches that fall due. */
export class ManualClock implements Clock {
  readonly kind = "manual" as const;
  private time = 0;
  now(): number {
    return this.time;
  }
  setTime(t: number): void {
    this.time = t;
  }
  advance(ms: number): void {
    this.time += ms;
  }
}
