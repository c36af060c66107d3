// The ML area's public face: MLlib's streaming algorithms and the types they learn from.

export { Vector, DenseVector, SparseVector, Vectors, VectorParseError } from "./linalg.js";
export { LabeledPoint } from "./labeled-point.js";
export { StreamingKMeans, StreamingKMeansModel } from "./kmeans.js";
export type { KMeansBatchSummary, TimeUnit } from "./kmeans.js";
export {
  GeneralizedLinearModel,
  LinearRegressionModel,
  LogisticRegressionModel,
  StreamingLinearAlgorithm,
  StreamingLinearRegressionWithSGD,
  StreamingLogisticRegressionWithSGD,
  InvalidLabelError,
} from "./regression.js";
export type { LinearModelBatchSummary } from "./regression.js";
export { StreamingTest, StreamingTestResult, BinarySample, StatCounter, WelchTTest, StudentTTest } from "./streaming-test.js";
export type { BinarySampleLike, StreamingTestMethod, TestMethodName } from "./streaming-test.js";
export { ModelTrainingDStream } from "./training.js";
export type { ModelChartOptions } from "./charts.js";
export { MLInputError, DimensionMismatchError, NonFiniteValueError, ModelNotInitializedError, ModelCheckpointError } from "./errors.js";
