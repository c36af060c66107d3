// The engine's public face: everything a plain Node program or a notebook cell needs.

export { StreamingContext, checkpointSupport } from "./context.js";
export type { StreamingContextOptions, StreamingConf, StopOptions, StartOptions, StreamingState } from "./context.js";
export { SparkContext, RDD, formatRecord, JUPYTER_DISPLAY } from "./rdd.js";
export type { SparkContextOptions, MimeBundle } from "./rdd.js";
export { DStream, StatefulDStream, TransformedDStream, UnionDStream, ForEachDStream, DerivedDStream } from "./dstream.js";
export type { NameOption, UpdateStateOptions, UpdateStateIteratorOptions, ReduceWindowOptions } from "./dstream.js";
export { WindowedDStream, ReducedWindowedDStream } from "./window.js";
export { StateSpec, State, StateDStream, MapWithStateDStream } from "./state.js";
export type { MappingFunction, MappingFunctionWithTime, StateCheckpoint } from "./state.js";
export { Milliseconds, Seconds, Minutes } from "./duration.js";
export * from "./errors.js";
export type { StreamingListener, BatchInfo, OutputOperationInfo, ReceiverInfo, EventTimeProgress, DroppedRecordsInfo } from "./listener.js";
export { ManualClock, SystemClock } from "./clock.js";
export type { Clock } from "./clock.js";
export { DStreamGraph } from "./graph.js";
export { setPresenter, presenter } from "./presenter.js";
export type { Presenter, PrintSink, ChartSink, ChartOptions, ChartMode, ChartRow } from "./presenter.js";
export { InputDStream } from "./sources/input.js";
export { QueueInputDStream } from "./sources/queue.js";
export { Receiver, ReceiverInputDStream, ReceiverNotAttachedError } from "./sources/receiver.js";
export type { ReceiverStreamOptions, ReceiverState, BlockStore, ReceivedBlock, BlockSlice } from "./sources/receiver.js";
export { SocketInputDStream, SocketReceiver } from "./sources/socket.js";
export type { SocketStreamOptions } from "./sources/socket.js";
export { TextFileInputDStream, TextFileStreamError } from "./sources/textfile.js";
export type { TextFileStreamOptions } from "./sources/textfile.js";
export { RateInputDStream } from "./sources/rate.js";
export type { RateRow, RateStreamOptions } from "./sources/rate.js";
export { PIDRateEstimator, RateController, RateEstimatorConfigError } from "./sources/ratecontrol.js";
export type { PIDRateEstimatorOptions } from "./sources/ratecontrol.js";
export { runSliced, yieldToLoop } from "./slicing.js";
export { redisStream, saveToRedis, RedisInputDStream, RedisStreamError } from "./sources/redis.js";
export type { RedisStreamOptions, RedisSinkOptions, RedisStreamEntry, RedisConnectionOptions } from "./sources/redis.js";
// Importing checkpoint support plugs ssc.checkpoint(dir) and StreamingContext.getOrCreate into the context.
export {
  CheckpointMismatchError,
  CheckpointCorruptError,
  CheckpointVersionError,
  CheckpointUnreadableError,
  recoveryReportOf,
} from "./checkpoint/index.js";
export type { CheckpointOptions, RecoveryReport } from "./checkpoint/index.js";
export { KeyedMap, KeyedSet, keysEqual } from "./keys.js";
// Partitioned logs (Kafka, JetStream, Redis) and the receivers for MQTT and ZeroMQ; their clients load on first use.
export { DirectLogInputDStream, PartitionedSourceError, isPartitionedInput, comparePartitions } from "./sources/partitioned.js";
export type { PartitionedInput, PartitionStatus, DirectLogOptions, FetchedRecords } from "./sources/partitioned.js";
export type { PartitionRange, PartitionPosition, StreamInputInfo } from "./listener.js";
export { kafkaStream, saveToKafka, KafkaInputDStream, KafkaRDD, KafkaError, KafkaTopicNotFoundError, topicPartitionId } from "./sources/kafka.js";
export type { KafkaStreamOptions, KafkaSinkOptions, KafkaRecord, KafkaMessage, OffsetRange, KafkaConnectionOptions } from "./sources/kafka.js";
export { natsStream, saveToNats, NatsInputDStream, NatsError, NatsStreamNotFoundError, natsMsgId } from "./sources/nats.js";
export type { NatsStreamOptions, NatsSinkOptions, NatsRecord, NatsConnectionOptions } from "./sources/nats.js";
export { mqttStream, MqttReceiver, MqttError } from "./sources/mqtt.js";
export type { MqttStreamOptions, MqttRecord } from "./sources/mqtt.js";
export { zeromqStream, saveToZeroMQ, ZeroMQReceiver, ZeroMQError } from "./sources/zeromq.js";
export type { ZeroMQStreamOptions, ZeroMQSinkOptions, ZeroMQRecord } from "./sources/zeromq.js";
export { StorageLevel } from "./storage.js";
export type { StorageLevelName } from "./storage.js";
export { Broadcast, AccumulatorV2, LongAccumulator, DoubleAccumulator, CollectionAccumulator } from "./shared/index.js";
export type { AccumulatorInfo } from "./shared/index.js";
export { WatermarkedDStream, EventWindowDStream } from "./eventtime/index.js";
export type { EventWindow, EventWindowRow, EventWindowOptions, EventWindowOutputMode } from "./eventtime/index.js";
// SQL over DuckDB (DuckDB itself loads on first use): SparkSession, DataFrame, toDF, stream.sql, views, sinks.
export * from "./sql/index.js";
export { AsyncTransformedDStream, AsyncStepPendingError } from "./async.js";
// A live dashboard outside the notebook (importing it adds ssc.dashboard() and stream.dashboard()).
export { Dashboard } from "./dashboard/index.js";
export type { DashboardOptions } from "./dashboard/index.js";
export { ChartModel, ChartOptionsError } from "./chart.js";
export type { VegaLiteSpec } from "./chart.js";
// MLlib's streaming algorithms: Vectors, LabeledPoint, StreamingKMeans, streaming regression, StreamingTest.
export * from "./ml/index.js";
// Importing the group area plugs `new StreamingContext(sc, batch, { group })` into the context.
export * from "./group/index.js";
