//! Containers: the framings that formats are packed in, read once here and handed to the
//! readers of `source/` as byte ranges and checked streams. Formats interpret payloads;
//! containers only find, bound and check them, and know nothing of tensors.
//!
//! - `zip.rs`: ZIP archives (PyTorch checkpoints, Keras `.keras`, NumPy `.npz`), opened through
//!   `input::RangeReader` with limits and every member's CRC-32 checked.

pub mod zip;
