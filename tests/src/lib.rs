//! The harness shared by the end-to-end tests and the benchmarks.
