//! The masked CRC32C TensorFlow stores in bundles and TFRecords. A module of its own because
//! both the input layer (`input.rs`, which checks TFRecord framing while it inflates a stream)
//! and the readers (`source/`) use it, and the input layer must not depend on the readers.
//! It also counts the checksums the readers verified, so that `verify` can say what it checked.

use std::sync::atomic::{AtomicU64, Ordering};

/// Checksums that matched since the process started (every reader calls [`verified`]).
static VERIFIED: AtomicU64 = AtomicU64::new(0);

/// Records that `n` checksums the input carries were computed and matched.
pub fn verified(n: u64) {
    VERIFIED.fetch_add(n, Ordering::Relaxed);
}

/// How many checksums have matched so far; `verify` takes the difference around one input.
pub fn verified_count() -> u64 {
    VERIFIED.load(Ordering::Relaxed)
}

/// Masked CRC32C as TensorFlow stores it in bundles and TFRecords.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}
