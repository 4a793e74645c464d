//! Containers: the framings that formats are packed in, read once here and handed to the
//! readers of `source/` as byte ranges and checked streams. Formats interpret payloads;
//! containers only find, bound and check them, and know nothing of tensors.
//!
//! - `cursor.rs`: the one buffered reader over a `FileRange` (a read window), which the others
//!   and the readers' own header walks are built on.
//! - `protobuf.rs`: the one protobuf field walker (over slices and over ranges), with one rule
//!   for field numbers and one for lengths.
//! - `tfrecord/`: TFRecord framing: the header and masked CRC-32C codec, sequential and
//!   indexed record reading, GZIP / ZLIB streams spooled with the damaged record named.
//! - `zip.rs`: ZIP archives (PyTorch checkpoints, Keras `.keras`, NumPy `.npz`), opened through
//!   `input::RangeReader` with limits and every member's CRC-32 checked.

pub mod cursor;
pub mod protobuf;
pub mod tfrecord;
pub mod zip;
