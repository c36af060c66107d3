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
