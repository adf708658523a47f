//! Adapters from the CLI to capture-crate entry points still being settled.

use std::path::Path;

use anyhow::Result;
use mrte_capture::event::EventSink;
use mrte_capture::pipeline::Pipeline;

/// Read a capture file through the pipeline into `sink`.
pub fn run_file<S: EventSink>(path: &Path, pipeline: &mut Pipeline, sink: &mut S) -> Result<()> {
    let _ = (pipeline, sink);
    anyhow::bail!("file input not wired yet: {}", path.display())
}
