//! `--manifest`'s size and SHA-256 of an output, computed on the bytes as a sink writes them
//! instead of reading the output back: [`Hashing`] counts and hashes bytes in order, and the
//! sink leaves the result in the [`Hashed`] cell that [`super::Sink::hash`] handed out once
//! `finish` has written the last byte. A directory output (`-o DIR`) is summed up from the files
//! this run wrote, as `sha256sum` lists them. Talks to: the sinks that hash (`mod.rs`, `zip.rs`,
//! `dir.rs`) and `cmd/convert.rs`, which passes the result to `batch.rs`.

use std::sync::{Arc, OnceLock};

use sha2::{Digest as _, Sha256};

/// An output's size in bytes and SHA-256 (lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub bytes: u64,
    pub sha256: String,
}

/// Where a sink leaves its [`Digest`] when it finishes; left empty where the output was not
/// written in order after all (members filled by `--jobs` workers), which is then read back.
pub type Hashed = Arc<OnceLock<Digest>>;

/// Bytes hashed in the order they appear in the output.
#[derive(Clone, Default)]
pub struct Hashing {
    sha: Sha256,
    bytes: u64,
}

impl Hashing {
    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.bytes += data.len() as u64;
    }

    /// How many bytes were hashed: the output offset hashing has reached.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> Digest {
        Digest {
            bytes: self.bytes,
            sha256: hex(&self.sha.finalize()),
        }
    }
}

/// The digest of a directory's files written by this run, given each one's path relative to
/// the directory and its digest: the SHA-256 of what `sha256sum` prints for them, one
/// `<sha256>  <path>\n` line each, in byte order of the paths; the size is the files' total.
pub fn listing(files: &mut [(String, Digest)]) -> Digest {
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut sha = Sha256::new();
    let mut bytes = 0u64;
    for (path, d) in files.iter() {
        sha.update(format!("{}  {path}\n", d.sha256).as_bytes());
        bytes += d.bytes;
    }
    Digest {
        bytes,
        sha256: hex(&sha.finalize()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_in_pieces_is_the_sha256_of_the_whole() {
        let mut h = Hashing::default();
        h.update(b"ab");
        h.update(b"c");
        let d = h.finish();
        assert_eq!(d.bytes, 3);
        // `printf abc | sha256sum`
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_listing_is_the_sha256_of_sha256sums_lines_in_path_order() {
        let abc = Hashing::default().finish(); // the empty file
        let mut files = vec![
            ("b/x.npy".to_string(), abc.clone()),
            ("a.npy".to_string(), abc.clone()),
        ];
        let d = listing(&mut files);
        assert_eq!(d.bytes, 0);
        let e = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let text = format!("{e}  a.npy\n{e}  b/x.npy\n");
        assert_eq!(d.sha256, hex(&Sha256::digest(text.as_bytes())));
        assert_eq!(files[0].0, "a.npy");
    }
}
