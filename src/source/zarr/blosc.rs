//! The blosc (v1) codec of zarr (numcodecs `Blosc`, v3 `blosc`), decoded by c-blosc 1.21
//! through the `blosc-src` crate (built from its bundled sources with lz4, zstd and zlib; blosclz
//! is blosc's own). The header is checked first (`blosc_cbuffer_validate`: the stored size must
//! be exactly the bytes present, the decoded size within the caller's bound), then the chunk is
//! decoded into a buffer of exactly that size, which c-blosc never writes past.

use anyhow::{bail, Result};

/// Decodes one blosc buffer of at most `limit` decoded bytes.
pub fn decode(src: &[u8], limit: u64) -> Result<Vec<u8>> {
    let mut nbytes: usize = 0;
    // SAFETY: `src` is a live slice of `src.len()` bytes; `nbytes` is a live local. The call
    // reads at most the 16-byte header, after checking that `src.len()` covers it.
    let ok =
        unsafe { blosc_src::blosc_cbuffer_validate(src.as_ptr().cast(), src.len(), &mut nbytes) };
    if ok != 0 {
        bail!(
            "not a valid blosc buffer ({} bytes; its header disagrees)",
            src.len()
        );
    }
    if nbytes as u64 > limit {
        bail!("a blosc buffer that decodes to {nbytes} bytes, more than {limit}");
    }
    if nbytes == 0 {
        return Ok(Vec::new());
    }
    let mut out = vec![0u8; nbytes];
    // SAFETY: the header was validated against `src.len()`; `out` is a live, writable buffer of
    // `nbytes` bytes, which is the `destsize` c-blosc is told and never writes past; one
    // internal thread, no global state (the `_ctx` variant needs no blosc_init).
    let n = unsafe {
        blosc_src::blosc_decompress_ctx(src.as_ptr().cast(), out.as_mut_ptr().cast(), nbytes, 1)
    };
    if n < 0 || n as usize != nbytes {
        bail!("corrupt blosc buffer (c-blosc returned {n})");
    }
    Ok(out)
}
