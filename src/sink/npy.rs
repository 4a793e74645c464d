//! The `.npy` header, written by hand because it must come before the data is read (the
//! ndarray-npy crate writes whole in-memory arrays only). It is byte-for-byte what NumPy's
//! `np.save` writes: the sorted dict literal, 21 spare spaces of growth room for the first axis,
//! padding to a 64-byte data offset, version 1.0 unless the header needs 2.0.

/// NumPy's `GROWTH_AXIS_MAX_DIGITS`.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
const ARRAY_ALIGN: usize = 64;
const MAGIC: &[u8] = b"\x93NUMPY";

/// The complete header (magic through the final newline) for a C-order array.
pub fn header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let shape_repr = match shape {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_repr}, }}");
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    // Version 1.0 stores the header length in a u16; 2.0 in a u32.
    for (version, len_bytes) in [(1u8, 2usize), (2, 4)] {
        let hlen = dict.len() + 1;
        let padlen = ARRAY_ALIGN - ((MAGIC.len() + 2 + len_bytes + hlen) % ARRAY_ALIGN);
        let total = hlen + padlen;
        if len_bytes == 2 && total > u16::MAX as usize {
            continue;
        }
        let mut out = Vec::with_capacity(MAGIC.len() + 2 + len_bytes + total);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[version, 0]);
        if len_bytes == 2 {
            out.extend_from_slice(&(total as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(total as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.extend(std::iter::repeat_n(b' ', padlen));
        out.push(b'\n');
        return out;
    }
    unreachable!("a version 2.0 header always fits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_save_byte_for_byte() {
        // np.save(f, np.zeros((2, 3), np.float32)) header, from NumPy 2.4
        let h = header("<f4", &[2, 3]);
        assert_eq!(h.len(), 128);
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert_eq!(
            text.trim_end(),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        );
        assert_eq!(&h[..10], b"\x93NUMPY\x01\x00\x76\x00");
        assert!(h.ends_with(b" \n"));
    }

    #[test]
    fn data_offset_is_a_multiple_of_64_for_every_shape_form() {
        for shape in [
            &[][..],
            &[0],
            &[7],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &[u64::MAX, 1],
        ] {
            for descr in ["<f4", "|S200", "<c16"] {
                assert_eq!(header(descr, shape).len() % 64, 0, "{descr} {shape:?}");
            }
        }
    }

    #[test]
    fn huge_rank_switches_to_version_2() {
        let shape = vec![1u64; 30_000];
        let h = header("<f4", &shape);
        assert_eq!(h[6], 2);
        assert_eq!(h.len() % 64, 0);
        let hlen = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        assert_eq!(12 + hlen, h.len());
    }
}
