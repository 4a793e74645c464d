//! The masked CRC32C TensorFlow stores in bundles and TFRecords. A module of its own because
//! both the input layer (`input.rs`, which checks TFRecord framing while it inflates a stream)
//! and the readers (`source/`) use it, and the input layer must not depend on the readers.

/// Masked CRC32C as TensorFlow stores it in bundles and TFRecords.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}
