// SQL's public face: SparkSession and DataFrame over DuckDB (loaded on first use), and the sinks.
// Importing it adds rdd.toDF(), stream.sql(), stream.createOrReplaceTempView() and saveAsParquetFiles().
import "./streaming.js";

export { SparkSession, SparkSessionBuilder, DataFrameReader, RuntimeConfig } from "./session.js";
export type { CsvReadOptions } from "./session.js";
export { DataFrame, DataFrameWriter } from "./dataframe.js";
export type { SaveMode } from "./dataframe.js";
export { StructType, StructField } from "./types.js";
export type { Row, SqlValue, DataTypeName } from "./types.js";
export type { RowOf, NamedRowOf, QueryRow } from "./rows.js";
export type { SqlParam, SqlParams } from "./duckdb.js";
export { saveToDuckDB, saveToPostgres } from "./sinks.js";
export type { SinkOptions, DuckDBSinkOptions, PostgresSinkOptions, PostgresConnectionConfig } from "./sinks.js";
export { AnalysisException, ParseException, FileFormatError, SqlSinkError, DuckDBUnavailableError } from "./errors.js";
