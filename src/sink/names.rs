//! Tensor names to output locations. Inside an `.npz` a name is a key, kept verbatim (a leading
//! `/` included, so `np.load` gives it back); only NUL and control characters, which Python's
//! zipfile would cut or mangle, are refused. In a directory of `.npy` files every `/`-separated
//! component becomes a path component, escaped reversibly so that nothing can leave the
//! directory: `%` → `%25`, control characters and NUL → `%XX`, a `.` or `..` component → `%2E`
//! / `%2E%2E`, the leading `.` of any other component → `%2E` (so that TF2's
//! `.ATTRIBUTES/VARIABLE_VALUE` files are not hidden), and an empty component (a leading, doubled or trailing `/`) → `%2F` joined to its
//! neighbour. Decoding is: join the components with `/`, strip `.npy`, percent-decode.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// Endings of file formats that an output path is unlikely to mean as a directory: `-o x.npy.gz`
/// or `-o weights.zip` writes a directory of `.npy` files (only `.npz` and `.npy` name a
/// file), which [`looks_like_a_file`] says in a note.
const FILE_ENDINGS: &[&str] = &[
    ".npy.gz",
    ".npz.gz",
    ".gz",
    ".bz2",
    ".xz",
    ".zst",
    ".zip",
    ".tar",
    ".tgz",
    ".7z",
    ".h5",
    ".hdf5",
    ".pt",
    ".pth",
    ".bin",
    ".safetensors",
    ".pkl",
    ".json",
    ".txt",
    ".csv",
];

/// A note for a directory output whose name looks like a file (`x.npy.gz`, `weights.zip`),
/// unless that directory exists already.
pub fn looks_like_a_file(dir: &std::path::Path) -> Option<String> {
    let name = dir.file_name()?.to_string_lossy().to_lowercase();
    let ending = FILE_ENDINGS.iter().find(|e| name.ends_with(*e))?;
    if dir.is_dir() {
        return None;
    }
    Some(format!(
        "{} will be a directory of .npy files, not a {ending} file: only -o X.npz and -o X.npy name a file",
        dir.display()
    ))
}

/// The longest file name component most filesystems accept.
const MAX_COMPONENT: usize = 255;

/// A name (or any text from an input) made safe for a terminal: control characters, which
/// could move the cursor or rewrite the screen (ESC, OSC sequences), are escaped the way JSON
/// escapes them (`\u001b`, `\n`), as `list --json` prints them (in a name that needs escaping,
/// a backslash is doubled too, so that the escaping can be undone).
pub fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains("://") {
        let scrubbed = scrub_urls(name);
        if scrubbed != name {
            return shown(&scrubbed).into_owned().into();
        }
    }
    if !name.chars().any(|c| c.is_control()) {
        return name.into();
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.into()
}

/// The member name of a tensor in an `.npz` archive.
pub fn npz_member(name: &str) -> Result<String> {
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        bail!(
            "tensor name {name:?} contains the control character {:?}, which np.load cannot give back; write to a directory (-o DIR) to have it escaped",
            c
        );
    }
    Ok(format!("{name}.npy"))
}

/// The relative path of a tensor's `.npy` file inside an output directory.
pub fn dir_path(name: &str) -> Result<PathBuf> {
    if name.is_empty() {
        bail!("an empty tensor name cannot be a file name; write an .npz instead");
    }
    let parts: Vec<&str> = name.split('/').collect();
    let mut components = Vec::new();
    let mut current = String::new();
    for (i, part) in parts.iter().enumerate() {
        current.push_str(&escape_component(part));
        if i + 1 < parts.len() {
            // A slash separates directories only between two non-empty parts; a leading,
            // doubled or trailing one is kept as a literal `%2F`.
            if !part.is_empty() && !parts[i + 1].is_empty() {
                components.push(std::mem::take(&mut current));
            } else {
                current.push_str("%2F");
            }
        }
    }
    components.push(current);
    for c in components.iter_mut() {
        match c.as_str() {
            "." => *c = "%2E".into(),
            ".." => *c = "%2E%2E".into(),
            // A leading dot would hide the file (TF2's `.ATTRIBUTES/VARIABLE_VALUE`).
            _ if c.starts_with('.') => *c = format!("%2E{}", &c[1..]),
            _ => {}
        }
    }
    if let Some(last) = components.last_mut() {
        last.push_str(".npy");
    }
    for c in &components {
        if c.len() > MAX_COMPONENT {
            bail!(
                "tensor name {name:?} has a path component of {} bytes once escaped, longer than the {MAX_COMPONENT} bytes file systems allow; write an .npz instead",
                c.len()
            );
        }
    }
    Ok(components.iter().collect())
}

fn escape_component(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if c == '%' || c.is_control() || c == '\\' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with the secrets of every URL in it replaced by `***`: the user-info
/// (`https://user:secret@host/…` → `https://***@host/…`) and the query string (a presigned
/// URL's `?X-Amz-Signature=…` → `?***`). A URL ends at white space, a quote, or `: ` (the
/// colon of a message).
pub fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .char_indices()
            .find(|&(j, c)| {
                c.is_whitespace()
                    || matches!(c, '"' | '\'' | '<' | '>' | '`')
                    || (c == ':' && after[j + 1..].starts_with(' '))
                    || (c == ',' && after[j + 1..].starts_with(' '))
            })
            .map_or(after.len(), |(j, _)| j);
        let (url, tail) = after.split_at(end);
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        match path.find('?') {
            Some(q) => {
                out.push_str(&path[..q]);
                out.push_str("?***");
            }
            None => out.push_str(path),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
/// Inverse of [`dir_path`]: the tensor name a relative `.npy` path stands for.
pub fn name_from_dir_path(rel: &str) -> Option<String> {
    let s = rel.strip_suffix(".npy")?;
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_user_info_and_query_strings() {
        assert_eq!(
            scrub_urls("https://u:pw@h:8/x.st?X-Amz-Signature=ab%2F: no such object"),
            "https://***@h:8/x.st?***: no such object"
        );
        assert_eq!(
            scrub_urls("s3://b/k and 'gs://b/x?s=1'"),
            "s3://b/k and 'gs://b/x?***'"
        );
        assert_eq!(scrub_urls("no url: a?b"), "no url: a?b");
        assert_eq!(shown("http://a:b@h/x\n"), "http://***@h/x\\n");
    }

    fn round_trip(name: &str) -> PathBuf {
        let p = dir_path(name).unwrap();
        assert!(p.is_relative(), "{name:?} -> {p:?}");
        assert!(
            p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "{name:?} -> {p:?} leaves the directory"
        );
        let back = name_from_dir_path(&p.to_string_lossy()).unwrap();
        assert_eq!(back, name, "via {p:?}");
        p
    }

    #[test]
    fn ordinary_names_map_to_plain_paths() {
        assert_eq!(
            round_trip("dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"),
            PathBuf::from("dense/kernel/%2EATTRIBUTES/VARIABLE_VALUE.npy")
        );
        assert_eq!(round_trip("ünï/名前"), PathBuf::from("ünï/名前.npy"));
    }

    #[test]
    fn hostile_names_are_escaped_reversibly_and_stay_inside() {
        for name in [
            "../../etc/passwd",
            "/abs/path",
            "a//b",
            "a/",
            "./x",
            "..",
            "/",
            "nul\0byte",
            "tab\tand\u{7f}",
            "50%/x",
            "%2E%2E",
            "back\\slash",
            "a/../b",
        ] {
            round_trip(name);
        }
        assert_eq!(round_trip("/abs"), PathBuf::from("%2Fabs.npy"));
        assert_eq!(round_trip(".."), PathBuf::from("%2E%2E.npy"));
        assert_eq!(
            round_trip(".hidden/.x"),
            PathBuf::from("%2Ehidden/%2Ex.npy")
        );
        assert_eq!(round_trip("a/.../b"), PathBuf::from("a/%2E../b.npy"));
    }

    #[test]
    fn overlong_components_are_refused_with_a_message() {
        let e = dir_path(&"x".repeat(300)).unwrap_err().to_string();
        assert!(e.contains("255"), "{e}");
    }

    #[test]
    fn npz_members_keep_names_verbatim_but_refuse_control_characters() {
        assert_eq!(npz_member("/lead/x").unwrap(), "/lead/x.npy");
        assert!(npz_member("a\0b").is_err());
        assert!(npz_member("a\nb").is_err());
    }

    #[test]
    fn shown_escapes_terminal_control_characters_like_json() {
        assert_eq!(shown("plain/név"), "plain/név");
        assert_eq!(shown("a\x1b]0;pwned\x07b"), "a\\u001b]0;pwned\\u0007b");
        assert_eq!(shown("x\ny\\z\u{9b}"), "x\\ny\\\\z\\u009b");
        assert!(!shown("\x1b[2J").chars().any(char::is_control));
    }
}
