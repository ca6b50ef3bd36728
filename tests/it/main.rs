//! End-to-end tests in one binary.
