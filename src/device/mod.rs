//! The device stage: where a dense tensor's element conversion runs. `cpu` converts on the host
//! (`transform.rs`); `gpu` uploads each chunk to a GPU through wgpu, converts it there and
//! copies the result back, the way `.numpy()` copies a GPU-resident tensor to the host; `auto`
//! uses a GPU when there is one. Both paths give byte-identical output. A tensor goes through
//! as a [`DeviceRun`]: push source chunks, get converted bytes, finish. Which conversions the
//! GPU takes is derived from the converter's [`Op`](crate::transform::Op) in `kernel.rs`.
//! Per-tensor statistics (bytes each way, kernel and readback time) are collected for
//! `--stats`.

#[cfg(feature = "gpu")]
pub mod gpu;
pub mod kernel;

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;

use crate::transform::Converter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// Convert on the host
    #[default]
    Cpu,
    /// Convert on a GPU through wgpu; fail if there is none
    Gpu,
    /// Use a GPU when one is found, else the host (and say so)
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// What the host did: time reading the input, converting and writing the output, and the
    /// bytes read and written (measured only under `--stats`).
    pub host: HostTimes,
}

/// The host's side of one tensor (or of all of them): read, convert and write.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostTimes {
    pub read: Duration,
    pub convert: Duration,
    pub write: Duration,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl HostTimes {
    fn add(&mut self, o: &HostTimes) {
        self.read += o.read;
        self.convert += o.convert;
        self.write += o.write;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
    }

    /// Bytes written per second of the whole (read + convert + write), in MB/s.
    pub fn throughput(&self) -> f64 {
        let t = (self.read + self.convert + self.write).as_secs_f64();
        if t == 0.0 {
            0.0
        } else {
            self.bytes_written as f64 / t / 1e6
        }
    }

    fn text(&self) -> String {
        format!(
            "read {} B in {:.3} ms, convert {:.3} ms, write {} B in {:.3} ms ({:.1} MB/s)",
            self.bytes_read,
            self.read.as_secs_f64() * 1e3,
            self.convert.as_secs_f64() * 1e3,
            self.bytes_written,
            self.write.as_secs_f64() * 1e3,
            self.throughput()
        )
    }
}

impl TensorStats {
    /// Adds another's bytes and times to these (the totals).
    fn add(&mut self, o: &TensorStats) {
        self.h2d_bytes += o.h2d_bytes;
        self.d2h_bytes += o.d2h_bytes;
        self.upload += o.upload;
        self.kernel += o.kernel;
        self.readback += o.readback;
        self.host.add(&o.host);
    }

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
            "read_bytes": self.host.bytes_read,
            "read_s": self.host.read.as_secs_f64(),
            "convert_s": self.host.convert.as_secs_f64(),
            "written_bytes": self.host.bytes_written,
            "write_s": self.host.write.as_secs_f64(),
            "mb_per_s": self.host.throughput(),
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

    /// Starts converting one dense tensor: on the GPU when one is open and has a kernel for
    /// `cpu`'s op, else with `cpu`. Push the source chunks into the returned [`DeviceRun`] in
    /// order, write what each push returns, then what `finish` returns.
    pub fn start<'a>(
        &'a mut self,
        name: &str,
        cpu: &'a Converter,
        chunk: usize,
    ) -> Result<DeviceRun<'a>> {
        #[cfg(feature = "gpu")]
        let (gpu_stream, path) = match self.gpu.as_mut() {
            Some(ctx) => match kernel::Kernel::for_conversion(cpu) {
                Ok(kernel) => (Some(ctx.start(kernel, chunk)?), "gpu".to_string()),
                Err(why) => (None, format!("cpu: {why}")),
            },
            None => (None, "cpu".to_string()),
        };
        #[cfg(not(feature = "gpu"))]
        let path = {
            let _ = chunk;
            "cpu".to_string()
        };
        let stats = TensorStats {
            name: name.to_string(),
            path,
            ..Default::default()
        };
        Ok(DeviceRun {
            stage: self,
            cpu,
            #[cfg(feature = "gpu")]
            gpu: gpu_stream,
            stats,
            out: Vec::new(),
            finished: false,
        })
    }

    /// Adds one tensor's numbers to the totals, and keeps them when asked to.
    fn push(&mut self, s: TensorStats) {
        self.total.add(&s);
        self.on_gpu += usize::from(s.path == "gpu");
        if self.keep_per_tensor {
            self.stats.push(s);
        }
    }

    /// Adds the totals of a stage a `--jobs` worker used (its per-tensor records are moved over
    /// by the caller, in tensor order).
    pub fn absorb_totals(&mut self, other: &DeviceStage) {
        self.total.add(&other.total);
        self.on_gpu += other.on_gpu;
    }

    /// Whether conversions run on the host (no GPU open): only then do `--jobs` workers take
    /// tensors, each with a host stage of its own.
    pub fn is_host(&self) -> bool {
        #[cfg(feature = "gpu")]
        {
            self.gpu.is_none()
        }
        #[cfg(not(feature = "gpu"))]
        {
            true
        }
    }

    /// Records a tensor that never reaches the device stage (strings, plain copies).
    pub fn record_host_only(&mut self, name: &str, why: &str, host: HostTimes) {
        self.total.host.add(&host);
        if !self.keep_per_tensor {
            return;
        }
        self.stats.push(TensorStats {
            name: name.into(),
            path: format!("cpu: {why}"),
            host,
            ..Default::default()
        });
    }

    /// Adds the host's times of the tensor the device stage just finished (its record is the
    /// last one kept).
    pub fn add_host_times(&mut self, host: HostTimes) {
        self.total.host.add(&host);
        if self.keep_per_tensor {
            if let Some(last) = self.stats.last_mut() {
                last.host.add(&host);
            }
        }
    }

    /// Whether a GPU was opened (the device columns of `--stats` mean something).
    fn uses_device(&self) -> bool {
        self.adapter_name().is_some() || self.on_gpu > 0
    }

    /// `--stats` output: per tensor and in total.
    pub fn report(&self, format: StatsFormat) -> String {
        let mut total = self.total.clone();
        total.path = format!("{} on the GPU", self.on_gpu);
        match format {
            StatsFormat::Json => {
                let doc = json!({
                    "device": self.adapter_name().unwrap_or_else(|| "cpu".into()),
                    "fallback": self.fallback,
                    "tensors": self.stats.iter().map(TensorStats::json).collect::<Vec<_>>(),
                    "total": total.json(),
                });
                serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
            }
            StatsFormat::Text => {
                let mut out = format!(
                    "device: {}\n",
                    self.adapter_name().unwrap_or_else(|| "cpu".into())
                );
                let device = self.uses_device();
                for s in self.stats.iter().chain(std::iter::once(&total)) {
                    if !device {
                        // On the CPU: what the host did, without device columns of zeros.
                        let path = if s.name == "total" { "cpu" } else { &s.path };
                        out.push_str(&format!("{}: {path}; {}\n", s.name, s.host.text()));
                        continue;
                    }
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
                    out.push_str(&format!("  host: {}\n", s.host.text()));
                }
                out
            }
        }
    }
}

/// One dense tensor going through the device stage (from [`DeviceStage::start`]): source
/// chunks go in by [`push`](DeviceRun::push), converted bytes come back, in order; the GPU's
/// results lag a chunk behind (it converts one chunk while the previous is read back), so
/// [`finish`](DeviceRun::finish) returns the rest and records the tensor's statistics.
pub struct DeviceRun<'a> {
    stage: &'a mut DeviceStage,
    cpu: &'a Converter,
    #[cfg(feature = "gpu")]
    gpu: Option<gpu::Stream>,
    stats: TensorStats,
    /// The converted bytes handed out by the last call.
    out: Vec<u8>,
    finished: bool,
}

impl DeviceRun<'_> {
    /// Converts `input` (whole source elements) and returns the output that is ready: all of
    /// it on the host (`input` itself when the conversion is the identity), on the GPU that of
    /// the chunks before this one.
    pub fn push<'b>(&'b mut self, input: &'b [u8]) -> Result<&'b [u8]> {
        if self.finished {
            bail!("internal: a chunk pushed after the device stage finished");
        }
        self.out.clear();
        #[cfg(feature = "gpu")]
        if let (Some(stream), Some(ctx)) = (self.gpu.as_mut(), self.stage.gpu.as_mut()) {
            stream.push(ctx, input, &mut self.stats, &mut self.out)?;
            return Ok(&self.out);
        }
        if self.cpu.is_identity() {
            return Ok(input);
        }
        self.cpu.convert(input, &mut self.out)?;
        Ok(&self.out)
    }

    /// Returns the output still pending and records the tensor in the stage's statistics.
    pub fn finish(&mut self) -> Result<&[u8]> {
        if self.finished {
            bail!("internal: the device stage finished twice");
        }
        self.finished = true;
        self.out.clear();
        #[cfg(feature = "gpu")]
        if let (Some(stream), Some(ctx)) = (self.gpu.as_mut(), self.stage.gpu.as_mut()) {
            stream.finish(ctx, &mut self.stats, &mut self.out)?;
        }
        self.stage.push(std::mem::take(&mut self.stats));
        Ok(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{DType, NpyType, Plan};

    #[test]
    fn a_host_run_converts_each_push_and_records_the_tensor_at_finish() {
        let mut stage = DeviceStage::cpu();
        let widen = Converter::new(DType::BF16, Plan::Numeric(NpyType::F32), false).unwrap();
        let mut run = stage.start("w", &widen, 1 << 20).unwrap();
        assert_eq!(run.push(&[0x80, 0x3f]).unwrap(), [0, 0, 0x80, 0x3f]);
        assert_eq!(run.push(&[0x00, 0xc0]).unwrap(), [0, 0, 0x00, 0xc0]);
        assert!(run.finish().unwrap().is_empty());
        assert!(run.push(&[0, 0]).is_err());
        assert!(run.finish().is_err());
        let copy = Converter::new(DType::F32, Plan::Numeric(NpyType::F32), false).unwrap();
        let mut run = stage.start("c", &copy, 1 << 20).unwrap();
        let input = 1.5f32.to_le_bytes();
        let out = run.push(&input).unwrap();
        assert_eq!(
            out.as_ptr(),
            input.as_ptr(),
            "an identity conversion copies nothing"
        );
        run.finish().unwrap();
        let names: Vec<_> = stage
            .stats
            .iter()
            .map(|s| (&s.name[..], &s.path[..]))
            .collect();
        assert_eq!(names, [("w", "cpu"), ("c", "cpu")]);
    }
}
