//! Large bytes objects of protocol 2: Python 2's pickle had no bytes opcode, so NumPy's and
//! torch's reductions under protocol 2 write bytes as `_codecs.encode(s, 'latin1')`, `s` a
//! unicode string holding one character per byte (UTF-8 in the stream: bytes 0x80 to 0xff take
//! two). A string longer than the unpickler reads (`LAZY_BYTES`) is kept as its span of the
//! input (`Value::StrSpan`); when `_codecs.encode` is called on it, this module decodes it, a
//! piece at a time, into an unlinked temporary file, so an array of any size is read in
//! bounded memory. Called by the unpickler (`mod.rs`) on `REDUCE`; the result
//! (`Value::Spooled`) is an array's or a nested torch.save's bytes (`numpy.rs`, `nested.rs`).

use std::io::{BufWriter, Write};

use anyhow::{bail, Context, Result};

use super::Value;
use crate::input::FileRange;

/// How much of the string is read at a time.
const PIECE: u64 = 1 << 20;

/// `_codecs.encode(s, encoding)` of a string left in `source` at `off`, `len` bytes of UTF-8.
pub(super) fn encode(args: &[Value], source: Option<&FileRange>) -> Result<Value> {
    let Some(Value::StrSpan(off, len)) = args.first() else {
        bail!("internal: _codecs.encode of a large string without its span");
    };
    let enc = args.get(1).and_then(Value::as_str).unwrap_or_default();
    if !matches!(enc.as_str(), "latin1" | "latin-1" | "iso-8859-1") {
        bail!("a string of {len} bytes encoded as '{enc}': only latin1 (how protocol 2 pickles bytes) is read");
    }
    let Some(source) = source else {
        bail!("internal: a string span without the pickle it lies in");
    };
    let text = source
        .slice(*off, *len)
        .context("a pickled string lies past the end of the pickle")?;
    let file =
        tempfile::tempfile().context("cannot create a temporary file for a pickled string")?;
    let mut out = BufWriter::with_capacity(PIECE as usize, file);
    let mut lead: Option<u8> = None;
    let mut buf = vec![0u8; PIECE.min(*len) as usize];
    let mut at = 0u64;
    while at < *len {
        let n = PIECE.min(*len - at) as usize;
        text.read_at(at, &mut buf[..n])?;
        let mut piece = Vec::with_capacity(n);
        for &b in &buf[..n] {
            match (lead.take(), b) {
                (None, 0..=0x7f) => piece.push(b),
                (None, 0xc2 | 0xc3) => lead = Some(b),
                (Some(l), 0x80..=0xbf) => piece.push(((l & 0x1f) << 6) | (b & 0x3f)),
                _ => bail!("a pickled string encoded as latin1 holds a character above 255 (or is not valid UTF-8), at byte {}", at),
            }
        }
        out.write_all(&piece)
            .context("cannot write a temporary file for a pickled string")?;
        at += n as u64;
    }
    if lead.is_some() {
        bail!("a pickled string ends inside a character (not valid UTF-8)");
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .context("cannot write a temporary file for a pickled string")?;
    Ok(Value::Spooled(FileRange::whole(file)?))
}
