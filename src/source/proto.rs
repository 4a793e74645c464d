//! TensorFlow protobuf messages, declared with prost's derive (field numbers from the TF 2.21
//! descriptors) so that no `protoc` is needed to build. Only the small messages are decoded
//! whole; a top-level TensorProto's payload fields are located by `wire` and streamed instead.

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub name: Vec<u8>,
}

impl TensorShapeProto {
    /// The concrete shape, refusing unknown ranks and unknown (-1) or negative dimensions.
    pub fn concrete(&self) -> anyhow::Result<Vec<u64>> {
        if self.unknown_rank {
            anyhow::bail!(
                "the shape has unknown rank; a concrete tensor needs a fully defined shape"
            );
        }
        self.dim
            .iter()
            .map(|d| {
                u64::try_from(d.size).map_err(|_| {
                    anyhow::anyhow!(
                        "the shape has an unknown or negative dimension ({})",
                        d.size
                    )
                })
            })
            .collect()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionDef {
    #[prost(int32, tag = "1")]
    pub producer: i32,
    #[prost(int32, tag = "2")]
    pub min_consumer: i32,
    #[prost(int32, repeated, tag = "3")]
    pub bad_consumers: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BundleHeaderProto {
    #[prost(int32, tag = "1")]
    pub num_shards: i32,
    /// 0 little-endian, 1 big-endian.
    #[prost(int32, tag = "2")]
    pub endianness: i32,
    #[prost(message, optional, tag = "3")]
    pub version: Option<VersionDef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BundleEntryProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    pub shard_id: i32,
    #[prost(int64, tag = "4")]
    pub offset: i64,
    #[prost(int64, tag = "5")]
    pub size: i64,
    #[prost(fixed32, tag = "6")]
    pub crc32c: u32,
    #[prost(message, repeated, tag = "7")]
    pub slices: Vec<TensorSliceProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorSliceProto {
    #[prost(message, repeated, tag = "1")]
    pub extent: Vec<Extent>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Extent {
    #[prost(int64, tag = "1")]
    pub start: i64,
    /// Absent means the full extent of the dimension (a proto3 oneof of one field).
    #[prost(int64, optional, tag = "2")]
    pub length: Option<i64>,
}

pub use crate::checksum::mask_crc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_matches_the_documented_constants() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(mask_crc(0), 0xa282_ead8);
        // an empty TFRecord record's length CRC: 29 03 98 07
        assert_eq!(mask_crc(crc32c::crc32c(&[0u8; 8])), 0x0798_0329);
    }
}
