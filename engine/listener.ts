// Streaming listener events, as Spark's StreamingListener reports them.

export interface ReceiverInfo {
  streamId: number;
  name: string;
  active: boolean;
  location?: string;
  lastErrorMessage?: string;
  lastError?: string;
  lastErrorTime?: number;
}

export interface OutputOperationInfo {
  batchTime: number;
  /** Position of the output operation in definition order. */
  id: number;
  name: string;
  description: string;
  startTime?: number;
  endTime?: number;
  duration?: number;
  failureReason?: string;
}

/** A position in a partitioned log: a Kafka offset or JetStream sequence (numbers), a Redis entry ID (a string). */
export type PartitionPosition = number | string;

/**
 * What one batch read from one partition of a log: positions [from, until) (Spark's OffsetRange: `until` is
 * the position after the last record taken; a Redis range is (from, until] entry IDs), the records taken, and
 * how far the log's end was past `until` when the batch was generated.
 */
export interface PartitionRange {
  /** Stable across restarts: "topic-3" for Kafka, the stream name for JetStream, the stream key for Redis. */
  partition: string;
  from: PartitionPosition;
  until: PartitionPosition;
  /** Records the batch took from this partition (a skipped malformed record is in the range but not counted). */
  count: number;
  /** Records in the log after `until` when the batch was generated (undefined when the source cannot tell). */
  lag?: number;
}

/** Spark's StreamInputInfo: what one input stream brought into one batch. */
export interface StreamInputInfo {
  inputStreamId: number;
  /** The input stream's name (Spark's UI looks it up by id; a listener here has no graph to ask). */
  name?: string;
  numRecords: number;
  /** Partitioned logs: the range each partition gave this batch, in partition order. */
  partitions?: PartitionRange[];
  /** Spark's metadata map: "Description" (one readable line per partition) and source-specific entries (Kafka: "offsets"). */
  metadata?: Record<string, unknown>;
}

export interface BatchInfo {
  batchTime: number;
  /** Records that entered the batch from all input streams. */
  numRecords: number;
  submissionTime: number;
  processingStartTime?: number;
  processingEndTime?: number;
  /** processingStartTime - submissionTime: how long the batch waited behind earlier ones. */
  schedulingDelay?: number;
  processingDelay?: number;
  totalDelay?: number;
  streamIdToNumRecords?: Record<number, number>;
  /** Per input stream, what it brought into the batch (partitions and their lag for partitioned logs). */
  streamIdToInputInfo?: Record<number, StreamInputInfo>;
  outputOperationInfos?: Record<number, OutputOperationInfo>;
  /** The first failure of an output operation of this batch, if any. */
  failureReason?: string;
  /** Event-time operators of this batch, by stream name: watermark, late records dropped, window state. */
  eventTime?: Record<string, EventTimeProgress>;
}

/** One event-time operator in one batch (Structured Streaming's eventTime and stateOperators progress). */
export interface EventTimeProgress {
  /** The watermark this batch applied (ms of event time); undefined before any event was seen. */
  watermark?: number;
  /** The largest event time seen so far (ms). */
  maxEventTime?: number;
  /** Records of this batch older than the watermark: dropped, counted here. */
  numRowsDroppedByWatermark: number;
  /** (window, key) rows kept in state after this batch. */
  numRowsTotal: number;
  /** (window, key) rows this batch changed. */
  numRowsUpdated: number;
  /** Windows evicted by this batch because the watermark passed their end. */
  numWindowsEvicted: number;
}

/** Records an input stream dropped (a streambook addition: Spark blocks its receivers instead). */
export interface DroppedRecordsInfo {
  streamId: number;
  name: string;
  /** Records dropped since this stream's previous report. */
  count: number;
  /** Records this stream dropped in all. */
  total: number;
  reason: string;
  /** Clock time of the report. */
  time: number;
}

export interface StreamingListener {
  onStreamingStarted?(e: { time: number }): void;
  onBatchSubmitted?(e: { batchInfo: BatchInfo }): void;
  onBatchStarted?(e: { batchInfo: BatchInfo }): void;
  onBatchCompleted?(e: { batchInfo: BatchInfo }): void;
  onOutputOperationStarted?(e: { outputOperationInfo: OutputOperationInfo }): void;
  onOutputOperationCompleted?(e: { outputOperationInfo: OutputOperationInfo }): void;
  onReceiverStarted?(e: { receiverInfo: ReceiverInfo }): void;
  onReceiverError?(e: { receiverInfo: ReceiverInfo }): void;
  onReceiverStopped?(e: { receiverInfo: ReceiverInfo }): void;
  /** An input stream dropped records (at most one report a second per stream, with counts). */
  onRecordsDropped?(e: { droppedInfo: DroppedRecordsInfo }): void;
  onStreamingStopped?(e: { time: number }): void;
}

export type StreamingListenerEvent<K extends keyof StreamingListener> = Parameters<NonNullable<StreamingListener[K]>>[0];
