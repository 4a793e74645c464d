//! The committed manual pages match what the binary renders, and `--version` / `--help` say
//! what a user installing the tool needs to know.

use crate::common;

use std::fs;
use std::process::Command;

use common::*;

#[test]
fn committed_man_pages_are_current_and_cover_every_subcommand() {
    let pages = tensor2npy::cmd::man::pages().unwrap();
    assert!(pages.len() >= 5);
    for (name, roff) in pages {
        let committed = fs::read(root().join("share/man/man1").join(&name)).unwrap_or_else(|_| {
            panic!("share/man/man1/{name} is missing: run completions/regenerate.sh")
        });
        assert!(
            committed == roff,
            "share/man/man1/{name} is stale: run completions/regenerate.sh"
        );
        let text = String::from_utf8(roff).unwrap();
        assert!(text.contains(".TH "), "{name}: not a man page");
    }
    // The binary prints the same page.
    let o = Command::new(bin())
        .args(["man", "convert"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let committed = fs::read(root().join("share/man/man1/tensor2npy-convert.1")).unwrap();
    assert_eq!(o.stdout, committed);
    let text = String::from_utf8(committed).unwrap();
    assert!(text.contains("\\-\\-select"), "options are documented");
    let o = Command::new(bin())
        .args(["man", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn version_says_whether_the_gpu_stage_is_built_in_and_help_lists_the_formats() {
    let o = Command::new(bin()).arg("--version").output().unwrap();
    assert!(o.status.success());
    let v = String::from_utf8(o.stdout).unwrap();
    assert!(
        v.starts_with(&format!("tensor2npy {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    if cfg!(feature = "gpu") {
        assert!(v.contains("GPU device stage built in"), "{v}");
    } else {
        assert!(v.contains("CPU only"), "{v}");
    }
    let o = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8(o.stdout).unwrap();
    for name in tensor2npy::source::names() {
        assert!(help.contains(&format!("  {name} ")), "{name} in: {help}");
    }
    assert!(help.contains("tensor2npy list"), "points to list: {help}");
}

#[test]
fn the_readme_fuzzing_section_names_every_fuzz_target() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("\n## Fuzzing\n").expect("a Fuzzing section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
    let manifest = fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
    let mut targets = Vec::new();
    for block in manifest.split("[[bin]]").skip(1) {
        let name = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = "))
            .expect("a [[bin]] without a name")
            .trim_matches('"');
        let source = root().join(format!("fuzz/fuzz_targets/{name}.rs"));
        assert!(
            source.is_file(),
            "fuzz target {name}: no {}",
            source.display()
        );
        assert!(
            section.contains(&format!("`{name}`")),
            "the README's Fuzzing section does not name the fuzz target `{name}`"
        );
        targets.push(format!("{name}.rs"));
    }
    assert!(
        targets.len() >= 20,
        "only {} fuzz targets in fuzz/Cargo.toml",
        targets.len()
    );
    // And every source there (but the shared helpers) is a target.
    for e in fs::read_dir(root().join("fuzz/fuzz_targets")).unwrap() {
        let file = e.unwrap().file_name().into_string().unwrap();
        assert!(
            file == "common.rs" || targets.contains(&file),
            "fuzz/fuzz_targets/{file} is not a [[bin]] of fuzz/Cargo.toml"
        );
    }
}
