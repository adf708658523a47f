//! Per-direction TCP stream reassembly.
