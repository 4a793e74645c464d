//! The `.npy` header (NumPy's `numpy.lib.format`): the magic `\x93NUMPY`, a version (1.0: a
//! 2-byte header length; 2.0: 4 bytes; 3.0: 4 bytes and UTF-8), then a Python dict literal with
//! exactly the keys `descr`, `fortran_order` and `shape`, which NumPy reads with
//! `ast.literal_eval`. Parsed here by a small literal parser (strings, integers, booleans,
//! `None`, tuples, lists, dicts; depth-limited), then checked as `np.load` checks it: the three
//! keys and no others, a boolean order, a tuple of non-negative integers, and a header no longer
//! than NumPy's `max_header_size`. The descr becomes a [`Descr`]: every type the tool writes
//! (and the same types big-endian), fixed-width bytes, and what NumPy has beyond (unicode,
//! structured, datetime, `object`), told apart so that the reader can say why it refuses.
//! Called by `mod.rs`; the fuzz target `npy_header` drives [`parse`].

use std::io::Read;

use anyhow::{bail, Context, Result};

use crate::dtype::DType;

pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// NumPy's `_MAX_HEADER_SIZE`: `np.load` refuses longer headers as unsafe.
pub const MAX_HEADER_SIZE: usize = 10_000;

/// What a descr says an element is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Descr {
    /// A number or bool, possibly big-endian.
    Numeric { dtype: DType, big_endian: bool },
    /// `|S<n>`: fixed-width bytes.
    Bytes(u64),
    /// `object`: refused, as `np.load(allow_pickle=False)` refuses it.
    Object,
    /// A type NumPy has but the outputs do not (unicode, structured, datetime, ...): its
    /// description and its item size.
    Unsupported { what: String, item: Option<u64> },
}

impl Descr {
    /// Bytes per element, when known.
    pub fn item_size(&self) -> Option<u64> {
        match self {
            Descr::Numeric { dtype, .. } => dtype.item_size().map(|s| s as u64),
            Descr::Bytes(n) => Some(*n),
            Descr::Object => Some(8),
            Descr::Unsupported { item, .. } => *item,
        }
    }
}

/// A parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub descr: Descr,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// Where the data starts: the header's total length.
    pub data_offset: u64,
}

/// Parses a header from the start of `bytes` (which may go on into the data).
pub fn parse(bytes: &[u8]) -> Result<Header> {
    read(&mut &bytes[..])
}

/// Reads a header from the start of a stream, consuming exactly the header.
pub fn read(r: &mut dyn Read) -> Result<Header> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .context("too short for a .npy header (truncated)")?;
    if &pre[..6] != MAGIC {
        bail!("not a .npy array: no \\x93NUMPY magic");
    }
    let (version, len_bytes) = match (pre[6], pre[7]) {
        (1, 0) => (1, 2),
        (2, 0) => (2, 4),
        (3, 0) => (3, 4),
        (major, minor) => {
            bail!(".npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)")
        }
    };
    let mut len = [0u8; 4];
    r.read_exact(&mut len[..len_bytes])
        .context("the .npy header ends early (truncated)")?;
    let hlen = u32::from_le_bytes(len) as usize;
    if hlen > MAX_HEADER_SIZE {
        bail!(
            "the .npy header is {hlen} bytes long, more than the {MAX_HEADER_SIZE} np.load accepts"
        );
    }
    let mut text = vec![0u8; hlen];
    r.read_exact(&mut text)
        .context("the .npy header ends early (truncated)")?;
    // Versions 1 and 2 are latin-1, 3 is UTF-8; a valid header is ASCII in all but names.
    let text: String = if version == 3 {
        String::from_utf8(text).context("the .npy 3.0 header is not UTF-8")?
    } else {
        text.iter().map(|&b| b as char).collect()
    };
    let mut header = dict(&text)?;
    header.version = version;
    header.data_offset = (8 + len_bytes + hlen) as u64;
    Ok(header)
}

/// The header dict, checked as `numpy.lib.format._read_array_header` checks it.
fn dict(text: &str) -> Result<Header> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    let lit = p.value(0)?;
    p.skip_ws();
    if p.at != p.s.len() {
        bail!("the .npy header has text after its dict");
    }
    let Lit::Dict(items) = lit else {
        bail!("the .npy header is not a dict");
    };
    let (mut descr, mut order, mut shape) = (None, None, None);
    for (k, v) in items {
        let slot = match &k {
            Lit::Str(k) if k == "descr" => &mut descr,
            Lit::Str(k) if k == "fortran_order" => &mut order,
            Lit::Str(k) if k == "shape" => &mut shape,
            _ => bail!("the .npy header has a key other than descr, fortran_order and shape"),
        };
        if slot.replace(v).is_some() {
            bail!("the .npy header names a key twice");
        }
    }
    let (Some(descr), Some(order), Some(shape)) = (descr, order, shape) else {
        bail!("the .npy header lacks one of descr, fortran_order and shape");
    };
    let Lit::Bool(fortran_order) = order else {
        bail!("the .npy header's fortran_order is not a bool");
    };
    let Lit::Tuple(dims) = shape else {
        bail!("the .npy header's shape is not a tuple");
    };
    let shape = dims
        .iter()
        .map(|d| match d {
            Lit::Int(n) if *n >= 0 => u64::try_from(*n).ok(),
            _ => None,
        })
        .collect::<Option<Vec<u64>>>()
        .context("the .npy header's shape is not a tuple of non-negative integers")?;
    Ok(Header {
        version: 0,
        descr: descr_of(&descr)?,
        fortran_order,
        shape,
        data_offset: 0,
    })
}

/// A descr: a type string, or a list of fields (a structured type).
fn descr_of(d: &Lit) -> Result<Descr> {
    match d {
        Lit::Str(s) => type_string(s),
        Lit::List(fields) => {
            if has_object(d) {
                return Ok(Descr::Object);
            }
            Ok(Descr::Unsupported {
                what: format!("a structured dtype of {} fields", fields.len()),
                item: None,
            })
        }
        _ => bail!("the .npy header's descr is neither a string nor a list of fields"),
    }
}

/// Whether a structured descr holds an object field anywhere.
fn has_object(d: &Lit) -> bool {
    match d {
        Lit::Str(s) => matches!(
            s.trim_start_matches(['<', '>', '|', '=']),
            "O" | "O4" | "O8"
        ),
        Lit::List(v) | Lit::Tuple(v) => v.iter().any(has_object),
        _ => false,
    }
}

/// A type string such as `<f4`, `>i8`, `|b1`, `|S7`, `<U3`, `|O`.
fn type_string(s: &str) -> Result<Descr> {
    let (order, rest) = match s.as_bytes().first() {
        Some(c @ (b'<' | b'>' | b'|' | b'=')) => (*c, &s[1..]),
        _ => (b'=', s),
    };
    let big_endian = order == b'>';
    let kind = rest.chars().next().unwrap_or(' ');
    let size_text = rest.get(kind.len_utf8()..).unwrap_or("");
    let size: Option<u64> = size_text.parse().ok();
    use DType::*;
    let dtype = match (kind, size) {
        ('O', _) => return Ok(Descr::Object),
        // `|S0` (no width) stays unsupported: zero-byte elements would let a tiny file
        // declare any number of them.
        ('S', Some(n)) if n > 0 => return Ok(Descr::Bytes(n)),
        ('b', Some(1)) => Bool,
        ('i', Some(1)) => I8,
        ('u', Some(1)) => U8,
        ('i', Some(2)) => I16,
        ('u', Some(2)) => U16,
        ('i', Some(4)) => I32,
        ('u', Some(4)) => U32,
        ('i', Some(8)) => I64,
        ('u', Some(8)) => U64,
        ('f', Some(2)) => F16,
        ('f', Some(4)) => F32,
        ('f', Some(8)) => F64,
        ('c', Some(8)) => C64,
        ('c', Some(16)) => C128,
        ('U', Some(n)) => {
            return Ok(Descr::Unsupported {
                what: format!("unicode strings ('{s}')"),
                item: n.checked_mul(4),
            })
        }
        _ => {
            return Ok(Descr::Unsupported {
                what: format!("dtype '{s}'"),
                item: size.filter(|_| matches!(kind, 'V' | 'f' | 'c' | 'i' | 'u')),
            })
        }
    };
    Ok(Descr::Numeric {
        dtype,
        big_endian: big_endian && dtype.item_size().unwrap_or(1) > 1,
    })
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Lit> {
        if depth > 32 {
            bail!("the .npy header nests too deeply");
        }
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut items = Vec::new();
                while !self.eat(b'}') {
                    let k = self.value(depth + 1)?;
                    if !self.eat(b':') {
                        bail!("the .npy header's dict lacks a ':'");
                    }
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    if !self.eat(b',') && self.peek() != Some(b'}') {
                        bail!("the .npy header's dict lacks a ',' or '}}'");
                    }
                }
                Ok(Lit::Dict(items))
            }
            Some(open @ (b'(' | b'[')) => {
                self.at += 1;
                let close = if open == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                let mut comma = false;
                while !self.eat(close) {
                    items.push(self.value(depth + 1)?);
                    comma = self.eat(b',');
                    if !comma && self.peek() != Some(close) {
                        bail!("the .npy header has a sequence that is not closed");
                    }
                }
                Ok(if open == b'[' {
                    Lit::List(items)
                } else if items.len() == 1 && !comma {
                    items.pop().unwrap_or(Lit::None) // `(x)` is x
                } else {
                    Lit::Tuple(items)
                })
            }
            Some(q @ (b'\'' | b'"')) => self.string(q),
            Some(b'-' | b'0'..=b'9') => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.at;
                while self.at < self.s.len() && self.s[self.at].is_ascii_alphanumeric() {
                    self.at += 1;
                }
                match &self.s[start..self.at] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    _ => bail!("the .npy header holds a name, which is no literal"),
                }
            }
            _ => bail!("the .npy header ends early or holds no literal"),
        }
    }

    fn string(&mut self, quote: u8) -> Result<Lit> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.at) else {
                bail!("the .npy header has an unterminated string");
            };
            self.at += 1;
            match c {
                c if c == quote => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        bail!("the .npy header has an unterminated string");
                    };
                    self.at += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'0' => 0,
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        Ok(Lit::Str(String::from_utf8_lossy(&out).into_owned()))
    }

    fn int(&mut self) -> Result<Lit> {
        let start = self.at;
        if self.s[self.at] == b'-' {
            self.at += 1;
        }
        while self.at < self.s.len() && self.s[self.at].is_ascii_digit() {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
        let n: i128 = text
            .parse()
            .with_context(|| format!("the .npy header holds a bad integer '{text}'"))?;
        // Python 2 wrote long integers with an `L` suffix, which NumPy still accepts.
        if self.s.get(self.at) == Some(&b'L') {
            self.at += 1;
        }
        Ok(Lit::Int(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(dict: &str) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend([1, 0]);
        v.extend((dict.len() as u16).to_le_bytes());
        v.extend(dict.as_bytes());
        v
    }

    #[test]
    fn numpy_headers_of_every_form_parse() {
        let h = parse(&crate::sink::npy::header("<f4", &[2, 3])).unwrap();
        assert_eq!(
            h.descr,
            Descr::Numeric {
                dtype: DType::F32,
                big_endian: false
            }
        );
        assert_eq!(
            (h.shape.clone(), h.fortran_order, h.data_offset),
            (vec![2, 3], false, 128)
        );
        let h = parse(&npy(
            "{'descr': '>c16', 'fortran_order': True, 'shape': (4,), }",
        ))
        .unwrap();
        assert_eq!(
            (h.descr, h.fortran_order, h.shape),
            (
                Descr::Numeric {
                    dtype: DType::C128,
                    big_endian: true
                },
                true,
                vec![4]
            )
        );
        let h = parse(&npy("{'descr':'|S5','shape':(),'fortran_order':False}")).unwrap();
        assert_eq!((h.descr, h.shape), (Descr::Bytes(5), vec![]));
        let h = parse(&npy(
            "{'descr': '|O', 'fortran_order': False, 'shape': (2L, 0L), }",
        ))
        .unwrap();
        assert_eq!((h.descr, h.shape), (Descr::Object, vec![2, 0]));
        let h = parse(&npy(
            "{'descr': [('a', '<i4'), ('b', [('c', '|O')])], 'fortran_order': False, 'shape': (1,), }",
        ))
        .unwrap();
        assert_eq!(h.descr, Descr::Object);
        assert!(matches!(
            parse(&npy(
                "{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }"
            ))
            .unwrap()
            .descr,
            Descr::Unsupported { item: Some(12), .. }
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "{'descr': '<f4', 'fortran_order': False}",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': ()}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': [1]}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,)}",
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}",
            "{'descr': __import__('os'), 'fortran_order': False, 'shape': ()}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,",
        ] {
            assert!(parse(&npy(bad)).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&npy(&deep)).is_err());
        assert!(parse(b"\x93NUMPY\x01\x00\xff").is_err());
        assert!(parse(b"\x93NUMPY\x04\x00\x00\x00").is_err());
    }
}
