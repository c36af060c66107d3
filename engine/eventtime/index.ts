// Event time and watermarks on the DStream API: withWatermark, countByEventWindow and
// reduceByKeyAndEventWindow (Structured Streaming's "Handling Late Data and Watermarking").

import { operators, type DStream } from "../dstream.js";
import { WatermarkedDStream } from "./watermarked.js";

export { WatermarkedDStream } from "./watermarked.js";
export { EventWindowDStream } from "./aggregate.js";
export type { EventWindowOptions, EventWindowOutputMode } from "./aggregate.js";
export type { EventWindow, EventWindowRow } from "./windows.js";

export interface EventTimeOperators {
  withWatermark<T>(parent: DStream<T>, eventTime: (x: T) => number | Date, delayThreshold: number): WatermarkedDStream<T>;
}

operators.eventTime = {
  withWatermark: <T>(parent: DStream<T>, eventTime: (x: T) => number | Date, delayThreshold: number) =>
    new WatermarkedDStream<T>(parent, eventTime, delayThreshold),
};
