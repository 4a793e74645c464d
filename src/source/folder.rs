//! Folders as inputs: listing the files of a local directory or of a prefix in a bucket alike,
//! picking the one file of a kind a folder holds, recognizing a JSON index file, and the one
//! rule for symbolic links that every reader applies to the files an input names or a folder
//! holds (Hugging Face shards, Keras shards, ONNX external data).
//!
//! The rule: such a file is read only when its real path (every symbolic link resolved) lies
//! inside the input's folder, or, when that folder is a snapshot of the Hugging Face cache
//! (`<repo>/snapshots/<revision>/`, beside `<repo>/blobs/`), inside the cache's repository
//! folder `<repo>`, where the cache keeps the files its snapshots link to
//! (`snapshots/<rev>/x -> ../../blobs/<hash>`). A link that leads anywhere else is refused,
//! naming the file and where it leads. Remote folders have no links.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Input;
use crate::input;

/// The names of the files directly inside `dir` (a local directory, or a prefix of a bucket),
/// sorted. Local entries that are not files (directories, sockets) are left out.
pub fn files(dir: &Path) -> Result<Vec<String>> {
    if let Some(url) = input::url_of(dir) {
        #[cfg(feature = "remote")]
        return crate::remote::list(url.trim_end_matches('/'));
        #[cfg(not(feature = "remote"))]
        bail!("{url}: this build of tensor2npy reads no remote inputs");
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    names.sort();
    Ok(names)
}

/// The files under the local directory `dir` whose names pass `keep`, searched through
/// subfolders at most `depth` levels down (folders that are symbolic links are not entered),
/// as paths relative to `dir` sorted component by component; an error past `max` of them.
/// Each file found obeys the links rule.
pub fn files_under(
    dir: &Path,
    depth: usize,
    max: usize,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<PathBuf>> {
    fn walk(
        root: &Path,
        rel: &Path,
        depth: usize,
        max: usize,
        keep: &dyn Fn(&str) -> bool,
        out: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let here = root.join(rel);
        let entries =
            std::fs::read_dir(&here).with_context(|| format!("cannot list {}", here.display()))?;
        for e in entries.filter_map(|e| e.ok()) {
            let Some(name) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            let path = here.join(&name);
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && depth > 0 {
                walk(root, &rel.join(&name), depth - 1, max, keep, out)?;
            } else if !is_dir && keep(&name) && path.is_file() {
                check_inside(root, &path)?;
                if out.len() == max {
                    bail!("{} holds more than {max} such files", root.display());
                }
                out.push(rel.join(&name));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), depth, max, keep, &mut out)?;
    out.sort();
    Ok(out)
}

/// The one of `found` (names of files in `dir`) to read, `None` when there is none, or an
/// error naming them all when there are several (`what` says what they are).
pub fn one_of(dir: &Path, mut found: Vec<&String>, what: &str) -> Result<Option<PathBuf>> {
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(dir.join(found.remove(0)))),
        _ => bail!(
            "{} holds several {what} ({}): pass the one to read",
            dir.display(),
            found
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Whether a file input looks like a JSON index: its name passes `is_index` and its first
/// byte other than white space is `{`.
pub fn is_json_index(input: &Input, is_index: impl Fn(&str) -> bool) -> bool {
    let name = input
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    is_index(&name) && input.head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The folder whose files an input in `dir` may read: `dir` itself, or the cache's repository
/// folder when `dir` is a Hugging Face cache snapshot or a folder inside one (a pipeline's
/// `unet/`), whose files link to `../blobs/` (both resolved).
fn allowed_root(dir: &Path) -> Result<PathBuf> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let real = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let repo = real.ancestors().skip(1).find_map(|snapshots| {
        (snapshots.file_name()? == "snapshots")
            .then(|| snapshots.parent())
            .flatten()
            .filter(|repo| repo.join("blobs").is_dir())
    });
    match repo {
        Some(repo) => Ok(repo.to_path_buf()),
        None => Ok(real),
    }
}

/// The shard `name` that the index file `index` (in `dir`) names: it must exist (a missing one
/// is an interrupted download or copy, named in the error) and obey the links rule.
pub fn shard(dir: &Path, name: &str, index: &Path) -> Result<PathBuf> {
    let p = dir.join(name);
    if !input::is_file(&p) {
        bail!(
            "shard {} is missing (the index {} names it; an interrupted download or copy?)",
            p.display(),
            index.display()
        );
    }
    check_inside(dir, &p)?;
    Ok(p)
}

/// Applies the rule of this module to `file`, which an input in folder `dir` names: an error
/// when a symbolic link takes it out of the folder. A file that does not exist passes (opening
/// it reports that); so does every remote path.
pub fn check_inside(dir: &Path, file: &Path) -> Result<()> {
    if input::url_of(file).is_some() {
        return Ok(());
    }
    let Ok(real) = file.canonicalize() else {
        return Ok(());
    };
    let root = allowed_root(dir)?;
    if !real.starts_with(&root) {
        bail!(
            "{} is refused: it is a symbolic link (or lies under one) that leads out of {} to {}",
            file.display(),
            root.display(),
            real.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_inside_the_folder_or_the_cache_repository_pass_and_others_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("models--org--m");
        let snap = repo.join("snapshots/abc");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::write(repo.join("blobs/h1"), b"x").unwrap();
        std::fs::write(t.path().join("outside"), b"x").unwrap();
        std::fs::write(snap.join("plain"), b"x").unwrap();
        symlink("../../blobs/h1", snap.join("cached")).unwrap();
        symlink("plain", snap.join("inside")).unwrap();
        symlink(t.path().join("outside"), snap.join("out")).unwrap();
        check_inside(&snap, &snap.join("plain")).unwrap();
        check_inside(&snap, &snap.join("inside")).unwrap();
        check_inside(&snap, &snap.join("cached")).unwrap();
        let e = check_inside(&snap, &snap.join("out"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("out") && e.contains("symbolic link"), "{e}");

        // Without blobs/ beside snapshots/, the folder itself is the limit.
        let plain = t.path().join("plain/snapshots/r");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(t.path().join("plain/w"), b"x").unwrap();
        symlink("../../w", plain.join("w")).unwrap();
        assert!(check_inside(&plain, &plain.join("w")).is_err());
        assert_eq!(files(&snap).unwrap(), ["cached", "inside", "out", "plain"]);
    }

    #[test]
    fn files_under_searches_subfolders_to_a_depth_sorted_and_bounded() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for f in ["b/x.ev", "a/y.ev", "a/deep/z.ev", "top.ev", "other.txt"] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), b"x").unwrap();
        }
        symlink(r.join("a"), r.join("linked")).unwrap();
        let ev = |n: &str| n.ends_with(".ev");
        let got = files_under(r, 1, 10, &ev).unwrap();
        let want: Vec<PathBuf> = ["a/y.ev", "b/x.ev", "top.ev"].map(PathBuf::from).to_vec();
        assert_eq!(got, want);
        assert_eq!(files_under(r, 2, 10, &ev).unwrap().len(), 4);
        let e = files_under(r, 2, 3, &ev).unwrap_err().to_string();
        assert!(e.contains("more than 3"), "{e}");
    }
}
