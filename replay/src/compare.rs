//! Per-fingerprint prod/test latency histograms and error/row divergence.
