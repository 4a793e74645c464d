//! The device stage: where a dense tensor's element conversion runs. `cpu` converts on the host
//! (`transform.rs`); `gpu` uploads each chunk to a GPU through wgpu, converts it there and
//! copies the result back, the way `.numpy()` copies a GPU-resident tensor to the host; `auto`
//! uses a GPU when there is one. Both paths give byte-identical output. Per-tensor statistics
//! (bytes each way, kernel and readback time) are collected for `--stats`.

#[cfg(feature = "gpu")]
pub mod gpu;

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;

use crate::dtype::{DType, Plan};
pub use crate::tensor::ChunkSink;

/// Streams a tensor's source chunks into the converter it is given.
pub type Feed<'a> = dyn FnMut(&mut ChunkSink) -> Result<()> + 'a;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// Convert on the host
    #[default]
    Cpu,
    /// Convert on a GPU through wgpu; fail if there is none
    Gpu,
    /// Use a GPU when one is found, else the host (and say so)
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsFormat {
    Text,
    Json,
}

/// What `tensor2npy devices` shows of an adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
}

impl AdapterSummary {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "index": self.index,
            "name": self.name,
            "backend": self.backend,
            "device_type": self.device_type,
            "driver": self.driver,
            "limits": {
                "max_buffer_size": self.max_buffer_size,
                "max_storage_buffer_binding_size": self.max_storage_buffer_binding_size,
                "max_compute_workgroups_per_dimension": self.max_compute_workgroups_per_dimension,
            },
        })
    }
}

/// Every GPU adapter this build can use.
pub fn adapters() -> Result<Vec<AdapterSummary>> {
    #[cfg(feature = "gpu")]
    {
        Ok(gpu::adapters())
    }
    #[cfg(not(feature = "gpu"))]
    {
        bail!("this tensor2npy was built without GPU support (cargo feature `gpu`)")
    }
}

/// Per-tensor numbers for `--stats`.
#[derive(Clone, Debug, Default)]
pub struct TensorStats {
    pub name: String,
    /// `gpu`, or `cpu` with the reason.
    pub path: String,
    pub h2d_bytes: u64,
    pub d2h_bytes: u64,
    pub upload: Duration,
    pub kernel: Duration,
    pub readback: Duration,
}

impl TensorStats {
    fn rate(bytes: u64, t: Duration) -> f64 {
        if t.is_zero() {
            0.0
        } else {
            bytes as f64 / t.as_secs_f64() / 1e9
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "path": self.path,
            "h2d_bytes": self.h2d_bytes,
            "d2h_bytes": self.d2h_bytes,
            "upload_s": self.upload.as_secs_f64(),
            "kernel_s": self.kernel.as_secs_f64(),
            "readback_s": self.readback.as_secs_f64(),
            "readback_gb_per_s": Self::rate(self.d2h_bytes, self.readback),
        })
    }
}

/// The chosen device, and the statistics of what ran on it.
pub struct DeviceStage {
    #[cfg(feature = "gpu")]
    gpu: Option<gpu::GpuContext>,
    /// Why there is no GPU, when the user asked for `auto` and got the CPU.
    pub fallback: Option<String>,
    /// Per-tensor numbers, kept only while `keep_per_tensor` is set (`--stats`), so that an
    /// input of a million tensors does not pay for a million records nobody prints.
    pub stats: Vec<TensorStats>,
    pub keep_per_tensor: bool,
    /// The sums over every tensor, and how many ran on the GPU.
    total: TensorStats,
    on_gpu: usize,
}

impl DeviceStage {
    pub fn cpu() -> DeviceStage {
        DeviceStage {
            #[cfg(feature = "gpu")]
            gpu: None,
            fallback: None,
            stats: Vec::new(),
            keep_per_tensor: true,
            total: TensorStats {
                name: "total".into(),
                ..Default::default()
            },
            on_gpu: 0,
        }
    }

    /// Opens the device the user chose; `auto` falls back to the CPU with the reason kept.
    pub fn open(choice: DeviceChoice, adapter: Option<usize>) -> Result<DeviceStage> {
        let mut stage = DeviceStage::cpu();
        if choice == DeviceChoice::Cpu {
            if adapter.is_some() {
                bail!("--adapter needs --device gpu or auto");
            }
            return Ok(stage);
        }
        #[cfg(feature = "gpu")]
        match gpu::GpuContext::open(adapter) {
            Ok(ctx) => stage.gpu = Some(ctx),
            Err(e) if choice == DeviceChoice::Auto => stage.fallback = Some(format!("{e:#}")),
            Err(e) => return Err(e.context("--device gpu")),
        }
        #[cfg(not(feature = "gpu"))]
        {
            let why = "this tensor2npy was built without GPU support (cargo feature `gpu`)";
            if choice == DeviceChoice::Gpu {
                bail!("--device gpu: {why}");
            }
            stage.fallback = Some(why.to_string());
        }
        Ok(stage)
    }

    /// The adapter in use, for messages.
    pub fn adapter_name(&self) -> Option<String> {
        #[cfg(feature = "gpu")]
        {
            self.gpu
                .as_ref()
                .map(|g| format!("{} ({})", g.info.name, g.info.backend))
        }
        #[cfg(not(feature = "gpu"))]
        {
            None
        }
    }

    /// Converts one dense tensor: on the GPU when one is open and has a kernel for the
    /// conversion, else with `cpu`. `feed` streams the source chunks; `emit` takes results.
    #[allow(clippy::too_many_arguments)]
    pub fn convert(
        &mut self,
        name: &str,
        src: DType,
        plan: Plan,
        big_endian: bool,
        chunk: usize,
        cpu: &crate::transform::Converter,
        feed: &mut Feed,
        emit: &mut ChunkSink,
    ) -> Result<()> {
        let mut stats = TensorStats {
            name: name.to_string(),
            ..Default::default()
        };
        #[cfg(feature = "gpu")]
        if let Some(ctx) = self.gpu.as_mut() {
            match gpu::GpuContext::kernel_for(src, plan, big_endian) {
                Ok(kernel) => {
                    stats.path = "gpu".into();
                    ctx.run(kernel, chunk, &mut stats, feed, emit)?;
                    self.push(stats);
                    return Ok(());
                }
                Err(why) => stats.path = format!("cpu: {why}"),
            }
        }
        let _ = (src, plan, big_endian, chunk);
        if stats.path.is_empty() {
            stats.path = "cpu".into();
        }
        if cpu.is_identity() {
            feed(emit)?;
        } else {
            let mut buf = Vec::new();
            feed(&mut |c: &[u8]| {
                buf.clear();
                cpu.convert(c, &mut buf)?;
                emit(&buf)
            })?;
        }
        self.push(stats);
        Ok(())
    }

    /// Adds one tensor's numbers to the totals, and keeps them when asked to.
    fn push(&mut self, s: TensorStats) {
        let t = &mut self.total;
        t.h2d_bytes += s.h2d_bytes;
        t.d2h_bytes += s.d2h_bytes;
        t.upload += s.upload;
        t.kernel += s.kernel;
        t.readback += s.readback;
        self.on_gpu += usize::from(s.path == "gpu");
        if self.keep_per_tensor {
            self.stats.push(s);
        }
    }

    /// Records a tensor that never reaches the device stage (strings).
    pub fn record_host_only(&mut self, name: &str, why: &str) {
        if !self.keep_per_tensor {
            return;
        }
        self.stats.push(TensorStats {
            name: name.into(),
            path: format!("cpu: {why}"),
            ..Default::default()
        });
    }

    /// `--stats` output: per tensor and in total.
    pub fn report(&self, format: StatsFormat) -> String {
        let mut total = self.total.clone();
        total.path = format!("{} on the GPU", self.on_gpu);
        match format {
            StatsFormat::Json => {
                let doc = json!({
                    "device": self.adapter_name(),
                    "fallback": self.fallback,
                    "tensors": self.stats.iter().map(TensorStats::json).collect::<Vec<_>>(),
                    "total": total.json(),
                });
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            }
            StatsFormat::Text => {
                let mut out = format!(
                    "device: {}\n",
                    self.adapter_name().unwrap_or_else(|| "cpu".into())
                );
                for s in self.stats.iter().chain(std::iter::once(&total)) {
                    out.push_str(&format!(
                        "{}: {}; host-to-device {} B in {:.3} ms, kernel {:.3} ms, device-to-host {} B in {:.3} ms ({:.2} GB/s)\n",
                        s.name,
                        s.path,
                        s.h2d_bytes,
                        s.upload.as_secs_f64() * 1e3,
                        s.kernel.as_secs_f64() * 1e3,
                        s.d2h_bytes,
                        s.readback.as_secs_f64() * 1e3,
                        TensorStats::rate(s.d2h_bytes, s.readback)
                    ));
                }
                out
            }
        }
    }
}
