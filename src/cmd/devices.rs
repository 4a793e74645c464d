//! `tensor2npy devices`: the GPU adapters wgpu can see, with the limits that size the device
//! stage's chunks.

use anyhow::Result;

use crate::device::adapters;

pub fn run(json: bool) -> Result<()> {
    let list = adapters()?;
    if json {
        let doc: Vec<_> = list.iter().map(|a| a.json()).collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if list.is_empty() {
        eprintln!("tensor2npy: no GPU adapter found (is a Vulkan driver installed?)");
        return Ok(());
    }
    for a in &list {
        println!(
            "{}: {} [{} {}] {}\n   max_buffer_size {}, max_storage_buffer_binding_size {}, max_compute_workgroups_per_dimension {}",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            a.max_buffer_size,
            a.max_storage_buffer_binding_size,
            a.max_compute_workgroups_per_dimension
        );
    }
    Ok(())
}
