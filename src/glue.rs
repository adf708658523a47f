//! Adapters from the CLI to capture-crate entry points.

use std::path::Path;

use anyhow::Result;
use mrte_capture::event::EventSink;
use mrte_capture::pipeline::Pipeline;

/// Read a capture file through the pipeline into `sink`.
pub fn run_file<S: EventSink>(path: &Path, pipeline: &mut Pipeline, sink: &mut S) -> Result<()> {
    mrte_capture::source::pcap::run_file(path, pipeline, sink)?;
    Ok(())
}
