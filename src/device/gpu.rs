//! The wgpu device stage. Each dense tensor's chunks are uploaded into GPU storage buffers,
//! converted by the WGSL kernels in `kernels.wgsl`, copied into mappable staging buffers and read
//! back to the host, double-buffered: chunk i is submitted before chunk i-1 is read back.
//! Chunk sizes respect the adapter's limits; every wgpu error is caught and reported instead of
//! reaching wgpu's default handler (which panics).

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use wgpu::util::DeviceExt;

use super::kernel::{Kernel, ENTRIES};
use super::{AdapterSummary, TensorStats};
use crate::dtype::DType;
use crate::transform::byte_float_table;

const WORKGROUP: u32 = 256;

/// An opened adapter and device with the kernels compiled.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    layout: wgpu::BindGroupLayout,
    pipelines: HashMap<&'static str, wgpu::ComputePipeline>,
    luts: HashMap<DType, wgpu::Buffer>,
    empty_lut: wgpu::Buffer,
    limits: wgpu::Limits,
    pub info: AdapterSummary,
    errors: Arc<Mutex<Option<String>>>,
    slots: Vec<Slot>,
}

/// The wgpu instance. The binary's `main` sets `XDG_RUNTIME_DIR` first (Vulkan's loader
/// probes Wayland and complains on stderr when it is unset), while it is still the only thread:
/// changing the environment here, with `--jobs` workers and the signal thread running, would be
/// a data race.
fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn summary(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    AdapterSummary {
        index,
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_buffer_size: limits.max_buffer_size,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
    }
}

/// Every adapter wgpu can see.
pub fn adapters() -> Vec<AdapterSummary> {
    let adapters = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, a))
        .collect()
}

impl GpuContext {
    /// Opens adapter `index` (from [`adapters`]) or the default high-performance one.
    pub fn open(index: Option<usize>) -> Result<GpuContext> {
        let instance = instance();
        let adapter = match index {
            Some(i) => {
                let mut all =
                    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
                if i >= all.len() {
                    let n = all.len();
                    let (verb, s) = if n == 1 { ("is", "") } else { ("are", "s") };
                    bail!("--adapter {i}: there {verb} {n} adapter{s} (see `tensor2npy devices`)");
                }
                all.swap_remove(i)
            }
            None => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            }))
            .context("no GPU adapter found")?,
        };
        let info = summary(index.unwrap_or(0), &adapter);
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tensor2npy"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .with_context(|| format!("cannot open the GPU device {}", info.name))?;
        let errors = Arc::new(Mutex::new(None));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("kernels"),
            source: wgpu::ShaderSource::Wgsl(include_str!("kernels.wgsl").into()),
        });
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("convert"),
            entries: &[
                storage(0, true),
                storage(1, false),
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                storage(3, true),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("convert"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let mut pipelines = HashMap::new();
        for entry in ENTRIES {
            let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            pipelines.insert(entry, p);
        }
        let empty_lut = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("no table"),
            contents: &[0u8; 16],
            usage: wgpu::BufferUsages::STORAGE,
        });
        let ctx = GpuContext {
            device,
            queue,
            layout,
            pipelines,
            luts: HashMap::new(),
            empty_lut,
            limits,
            info,
            errors,
            slots: Vec::new(),
        };
        ctx.check().context("while compiling the GPU kernels")?;
        Ok(ctx)
    }

    fn check(&self) -> Result<()> {
        let mut slot = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(e) => bail!("GPU error: {e}"),
            None => Ok(()),
        }
    }

    /// Input bytes per chunk: the user's chunk size, within the adapter's binding and buffer
    /// limits for both the input and the output, in whole 4-byte words of whole elements.
    fn chunk_cap(&self, k: &Kernel, chunk: usize) -> usize {
        let max_binding = self.limits.max_storage_buffer_binding_size;
        let max_buffer = self.limits.max_buffer_size;
        let limit = max_binding.min(max_buffer);
        let by_output = limit / k.out_size as u64 * k.in_size as u64;
        let cap = (chunk as u64).min(limit).min(by_output);
        let unit = (k.in_size * 4) as u64; // whole elements and whole words
        ((cap / unit).max(1) * unit) as usize
    }

    fn lut(&mut self, d: DType) -> &wgpu::Buffer {
        let device = &self.device;
        self.luts.entry(d).or_insert_with(|| {
            let table: Vec<u8> = byte_float_table(d)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("float8 table"),
                contents: &table,
                usage: wgpu::BufferUsages::STORAGE,
            })
        })
    }

    /// Starts converting one tensor with kernel `k`, in device chunks of at most `chunk`
    /// input bytes.
    pub fn start(&mut self, k: Kernel, chunk: usize) -> Result<Stream> {
        let cap = self.chunk_cap(&k, chunk);
        let in_cap = cap as u64;
        let out_cap = (cap / k.in_size * k.out_size).div_ceil(4) as u64 * 4;
        self.ensure_slots(in_cap, out_cap)?;
        if let Some(d) = k.lut {
            self.lut(d);
        }
        Ok(Stream {
            k,
            cap,
            turn: 0,
            pending: [None, None],
            padded: Vec::new(),
        })
    }

    fn ensure_slots(&mut self, in_cap: u64, out_cap: u64) -> Result<()> {
        if self.slots.len() == 2
            && self.slots[0].in_cap >= in_cap
            && self.slots[0].out_cap >= out_cap
        {
            return Ok(());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let make = |label, size, usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let mut slots = Vec::new();
        for _ in 0..2 {
            slots.push(Slot {
                src: make(
                    "src",
                    in_cap,
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                ),
                dst: make(
                    "dst",
                    out_cap,
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                ),
                staging: make(
                    "staging",
                    out_cap,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                ),
                params: make(
                    "params",
                    32,
                    wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                ),
                in_cap,
                out_cap,
            });
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("the GPU cannot hold {in_cap}-byte chunks: {e}; try a smaller --chunk-size");
        }
        self.slots = slots;
        self.check()
    }

    fn submit(
        &mut self,
        slot: usize,
        k: &Kernel,
        piece: &[u8],
        padded: &mut Vec<u8>,
        stats: &mut TensorStats,
    ) -> Result<Pending> {
        let started = Instant::now();
        let n_elems = (piece.len() / k.in_size) as u32;
        let out_len = piece.len() / k.in_size * k.out_size;
        let n_out_words = out_len.div_ceil(4) as u32;
        // Uploads and the shader's word access need whole 4-byte words.
        let upload: &[u8] = if piece.len().is_multiple_of(4) {
            piece
        } else {
            padded.clear();
            padded.extend_from_slice(piece);
            padded.resize(piece.len().div_ceil(4) * 4, 0);
            padded
        };
        let params: [u32; 8] = [
            n_out_words,
            n_elems,
            k.swap,
            k.mode,
            k.in_size as u32,
            k.out_size as u32,
            k.flags,
            0,
        ];
        let lut = match k.lut {
            Some(d) => self.lut(d).clone(),
            None => self.empty_lut.clone(),
        };
        let s = &self.slots[slot];
        self.queue.write_buffer(&s.src, 0, upload);
        self.queue
            .write_buffer(&s.params, 0, bytemuck::cast_slice(&params));
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("convert"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: s.src.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: s.dst.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: s.params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: lut.as_entire_binding(),
                },
            ],
        });
        let groups = n_out_words.div_ceil(WORKGROUP).max(1);
        let max_x = self.limits.max_compute_workgroups_per_dimension.max(1);
        let (x, y) = (groups.min(max_x), groups.div_ceil(max_x));
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kernel"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&self.pipelines[k.entry]);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        let kernel_index = self.queue.submit([encoder.finish()]);
        let read_len = (n_out_words as u64 * 4).max(4);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(&s.dst, 0, &s.staging, 0, read_len);
        let copy_index = self.queue.submit([encoder.finish()]);
        let (tx, rx) = mpsc::channel();
        s.staging
            .slice(..read_len)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        stats.h2d_bytes += upload.len() as u64 + params.len() as u64 * 4;
        stats.upload += started.elapsed();
        Ok(Pending {
            kernel_index,
            copy_index,
            rx,
            out_len,
            read_len,
            submitted: Instant::now(),
        })
    }

    /// Waits for chunk `p` in `slot` and appends its result to `out`.
    fn read_back(
        &mut self,
        slot: usize,
        p: Pending,
        stats: &mut TensorStats,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let wait = |index| {
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(index),
                    timeout: Some(Duration::from_secs(600)),
                })
                .context("GPU device lost or stuck")
        };
        wait(p.kernel_index)?;
        let kernel_done = Instant::now();
        stats.kernel += kernel_done.saturating_duration_since(p.submitted);
        wait(p.copy_index)?;
        p.rx.recv()
            .map_err(|_| anyhow!("the GPU readback was abandoned"))?
            .context("cannot map the GPU readback buffer")?;
        self.check()?;
        let staging = &self.slots[slot].staging;
        {
            let view = staging
                .slice(..p.read_len)
                .get_mapped_range()
                .context("cannot read the GPU readback buffer")?;
            out.extend_from_slice(&view[..p.out_len]);
        }
        staging.unmap();
        stats.d2h_bytes += p.read_len;
        stats.readback += kernel_done.elapsed();
        Ok(())
    }
}

/// One tensor on its way through the device: chunk i is submitted before chunk i-1 is read
/// back, so each [`Stream::push`] yields the previous chunk's result and
/// [`Stream::finish`] the last ones.
pub struct Stream {
    k: Kernel,
    /// Input bytes per device chunk.
    cap: usize,
    turn: usize,
    pending: [Option<Pending>; 2],
    /// A chunk's last partial word, padded to a whole one for the upload.
    padded: Vec<u8>,
}

impl Stream {
    /// Submits `input` (whole source elements) and appends to `out` every result that was
    /// ready to read back.
    pub fn push(
        &mut self,
        ctx: &mut GpuContext,
        input: &[u8],
        stats: &mut TensorStats,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        for piece in input.chunks(self.cap) {
            let slot = self.turn % 2;
            if let Some(p) = self.pending[slot].take() {
                ctx.read_back(slot, p, stats, out)?;
            }
            self.pending[slot] = Some(ctx.submit(slot, &self.k, piece, &mut self.padded, stats)?);
            // Read back the previous chunk while this one runs.
            let prev = 1 - slot;
            if let Some(p) = self.pending[prev].take() {
                ctx.read_back(prev, p, stats, out)?;
            }
            self.turn += 1;
        }
        Ok(())
    }

    /// Reads back what is still on the device, in order, into `out`.
    pub fn finish(
        &mut self,
        ctx: &mut GpuContext,
        stats: &mut TensorStats,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        for slot in [self.turn % 2, 1 - self.turn % 2] {
            if let Some(p) = self.pending[slot].take() {
                ctx.read_back(slot, p, stats, out)?;
            }
        }
        ctx.check()
    }
}

struct Slot {
    src: wgpu::Buffer,
    dst: wgpu::Buffer,
    staging: wgpu::Buffer,
    params: wgpu::Buffer,
    in_cap: u64,
    out_cap: u64,
}

struct Pending {
    kernel_index: wgpu::SubmissionIndex,
    copy_index: wgpu::SubmissionIndex,
    rx: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
    out_len: usize,
    read_len: u64,
    submitted: Instant,
}
