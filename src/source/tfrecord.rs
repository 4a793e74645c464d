//! TFRecord reader: `u64 length | masked crc32c(length) | data | masked crc32c(data)`, repeated,
//! each record a serialized TensorProto. Compressed files (GZIP or ZLIB wrap the whole stream)
//! are decompressed once into an unlinked temporary file by `input`. Every CRC is verified when
//! the file is opened, so a corrupt record fails before anything is written.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::input::FileRange;
use crate::proto::mask_crc;
use crate::source::tensorproto::ScannedTensor;
use crate::tensor::{ChunkSink, Source, TensorMeta};

pub struct TfRecordSource {
    path: String,
    files: Vec<PathBuf>,
    records: Vec<ScannedTensor>,
    metas: Vec<TensorMeta>,
    stacked: bool,
}

/// True when the first 12 bytes are a record header whose length CRC checks out.
pub fn sniff(head: &[u8]) -> bool {
    head.len() >= 12
        && mask_crc(crc32c::crc32c(&head[..8]))
            == u32::from_le_bytes(head[8..12].try_into().unwrap())
}

impl TfRecordSource {
    pub fn open(
        path: &str,
        files: Vec<PathBuf>,
        data: FileRange,
        stem: &str,
        stack: bool,
        max_fill: u64,
    ) -> Result<Self> {
        let mut records = Vec::new();
        let mut pos: u64 = 0;
        let total = data.len();
        while pos < total {
            let index = records.len();
            let mut header = [0u8; 12];
            if total - pos < 12 {
                bail!(
                    "record {index} at byte offset {pos}: truncated header ({} bytes left)",
                    total - pos
                );
            }
            data.read_at(pos, &mut header)?;
            let len = u64::from_le_bytes(header[..8].try_into().unwrap());
            let stored = u32::from_le_bytes(header[8..].try_into().unwrap());
            if mask_crc(crc32c::crc32c(&header[..8])) != stored {
                bail!(
                    "record {index} at byte offset {pos}: length checksum mismatch (corrupt file)"
                );
            }
            let body_start = pos + 12;
            if len > total - body_start || total - body_start - len < 4 {
                bail!(
                    "record {index} at byte offset {pos}: truncated (the record claims {len} bytes, {} remain)",
                    total - body_start
                );
            }
            let body = data.slice(body_start, len)?;
            let mut crc = 0u32;
            body.stream(1, 1 << 20, &mut |c: &[u8]| {
                crc = crc32c::crc32c_append(crc, c);
                Ok(())
            })?;
            let mut trailer = [0u8; 4];
            data.read_at(body_start + len, &mut trailer)?;
            if mask_crc(crc) != u32::from_le_bytes(trailer) {
                bail!("record {index} at byte offset {pos}: data checksum mismatch (corrupt file)");
            }
            if len == 0 {
                bail!("record {index} at byte offset {pos}: the record is empty, not a serialized TensorProto");
            }
            let t = ScannedTensor::scan(&body, max_fill)
                .with_context(|| format!("record {index} at byte offset {pos}"))?;
            records.push(t);
            pos = body_start + len + 4;
        }
        let metas = if stack {
            let first = records
                .first()
                .context("--stack needs at least one record")?;
            for (i, r) in records.iter().enumerate() {
                if r.dtype != first.dtype || r.shape != first.shape {
                    bail!(
                        "--stack needs records of one dtype and shape: record 0 is {} {:?}, record {i} is {} {:?}",
                        first.dtype, first.shape, r.dtype, r.shape
                    );
                }
            }
            let mut meta = first.meta(stem.to_string());
            meta.shape.insert(0, records.len() as u64);
            meta.stored_bytes = total;
            meta.max_string_len = meta
                .max_string_len
                .map(|_| records.iter().map(|r| r.max_string_len).max().unwrap_or(0));
            vec![meta]
        } else {
            records
                .iter()
                .enumerate()
                .map(|(i, r)| r.meta(format!("{stem}/{i}")))
                .collect()
        };
        Ok(TfRecordSource {
            path: path.to_string(),
            files,
            records,
            metas,
            stacked: stack,
        })
    }

    fn selected(&self, index: usize) -> &[ScannedTensor] {
        if self.stacked {
            &self.records
        } else {
            std::slice::from_ref(&self.records[index])
        }
    }
}

impl Source for TfRecordSource {
    fn display_path(&self) -> &str {
        &self.path
    }
    fn tensors(&self) -> &[TensorMeta] {
        &self.metas
    }
    fn read_dense(&mut self, index: usize, chunk: usize, sink: &mut ChunkSink) -> Result<()> {
        for r in self.selected(index) {
            r.read_dense(chunk, sink)?;
        }
        Ok(())
    }
    fn read_strings(&mut self, index: usize, sink: &mut ChunkSink) -> Result<()> {
        for r in self.selected(index) {
            r.read_strings(sink)?;
        }
        Ok(())
    }
    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }
}
