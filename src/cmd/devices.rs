//! `tensor2npy devices`: the GPU adapters wgpu can see, with the limits that size the device
//! stage's chunks.

use std::io::Write;

use anyhow::Result;

use crate::device::adapters;
use crate::sink::io_error;

pub fn run(json: bool) -> Result<()> {
    let list = adapters()?;
    if json {
        let doc: Vec<_> = list.iter().map(|a| a.json()).collect();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?).map_err(io_error)?;
        return out.flush().map_err(io_error);
    }
    if list.is_empty() {
        eprintln!("tensor2npy: no GPU adapter found (is a Vulkan driver installed?)");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for a in &list {
        writeln!(
            out,
            "{}: {} [{} {}] {}\n   max_buffer_size {}, max_storage_buffer_binding_size {}, max_compute_workgroups_per_dimension {}",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            a.max_buffer_size,
            a.max_storage_buffer_binding_size,
            a.max_compute_workgroups_per_dimension
        )
        .map_err(io_error)?;
    }
    out.flush().map_err(io_error)
}
