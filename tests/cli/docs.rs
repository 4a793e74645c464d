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

/// Where each option sits in `--help` (issue 25 item 4): the options of one reader family under
/// the heading that names it, the options every reader reads under the general headings.
const HEADINGS: &[(&str, &[&str])] = &[
    (
        "Options",
        &[
            "--from",
            "--strict",
            "--concat",
            "--quiet",
            "--json",
            "--metadata",
            "--require-checksums",
            "--help",
            "--version",
        ],
    ),
    ("Selection", &["--select", "--exclude"]),
    (
        "TensorFlow checkpoints and SavedModels",
        &["--include-internal", "--constants", "--no-verify"],
    ),
    (
        "Input limits",
        &[
            "--request-timeout",
            "--max-fill-bytes",
            "--max-decompressed",
        ],
    ),
    (
        "TFRecords, tf.train.Example and TensorBoard events",
        &[
            "--stack",
            "--features",
            "--ragged-features",
            "--dense-features",
        ],
    ),
    ("Orbax and DeepSpeed checkpoints", &["--step"]),
    ("PyTorch and pickles", &["--weights-only"]),
    ("GGUF and TFLite", &["--quant"]),
    (
        "Output options",
        &[
            "--output",
            "--to",
            "--compress",
            "--max-output",
            "--skip-unsupported",
        ],
    ),
    ("Dtypes", &["--bf16", "--f8", "--cast"]),
    (
        "Sparse and ragged tensors",
        &[
            "--sparse",
            "--ragged",
            "--fill",
            "--sparse-duplicates",
            "--max-dense-bytes",
        ],
    ),
    (
        "Performance",
        &["--device", "--adapter", "--stats", "--chunk-size", "--jobs"],
    ),
    ("Batch runs", &["--update", "--keep-going", "--manifest"]),
];

/// The headings of a `--help` text in order, each with the long options listed under it (up to
/// the next heading: a line at the margin ending in ':'; the after-help's lists, such as
/// `  -       standard output`, are no options).
fn help_sections(help: &str) -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            sections.push((line.trim_end_matches(':').to_string(), Vec::new()));
        } else if line.len() - line.trim_start().len() <= 6
            && line.trim_start().starts_with('-')
            && line.trim_start()[1..].starts_with(|c: char| c == '-' || c.is_ascii_alphabetic())
        {
            let long = line
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .unwrap_or_else(|| panic!("an option line without a long name: {line}"));
            let long = long.split(['[', '=', ',']).next().unwrap().to_string();
            sections
                .last_mut()
                .expect("an option before any heading")
                .1
                .push(long);
        }
    }
    sections
}

#[test]
fn help_shows_each_reader_family_s_options_under_its_own_heading() {
    for (sub, must) in [
        ("convert", HEADINGS),
        ("list", &[&HEADINGS[..8], &HEADINGS[9..10]].concat()[..]),
        ("verify", &[HEADINGS[0], HEADINGS[3]][..]),
    ] {
        let o = Command::new(bin()).args([sub, "--help"]).output().unwrap();
        assert!(o.status.success());
        let help = String::from_utf8(o.stdout).unwrap();
        let sections = help_sections(&help);
        // Every option shown is under the heading it belongs to...
        for (heading, options) in &sections {
            for opt in options {
                let want = HEADINGS
                    .iter()
                    .find(|(_, opts)| opts.contains(&opt.as_str()))
                    .unwrap_or_else(|| panic!("{sub}: {opt} is in no heading of the test"))
                    .0;
                assert_eq!(
                    heading, want,
                    "{sub} --help puts {opt} under {heading}:\n{help}"
                );
            }
        }
        // ... and each expected heading is there, in this order, with its options.
        let shown: Vec<&str> = sections
            .iter()
            .filter(|(_, opts)| !opts.is_empty())
            .map(|(h, _)| h.as_str())
            .collect();
        let wanted: Vec<&str> = must.iter().map(|(h, _)| *h).collect();
        assert_eq!(shown, wanted, "{sub} --help headings:\n{help}");
    }
    // The example of the issue, on the text itself: --weights-only after its heading and
    // before the next one.
    let o = Command::new(bin())
        .args(["convert", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(o.stdout).unwrap();
    let at = |s: &str| {
        help.find(s)
            .unwrap_or_else(|| panic!("{s} missing from:\n{help}"))
    };
    assert!(at("\nPyTorch and pickles:\n") < at("--weights-only"));
    assert!(at("--weights-only") < at("\nGGUF and TFLite:\n"));
    assert!(at("\nGGUF and TFLite:\n") < at("--quant <MODE>"));
    assert!(at("--quant <MODE>") < at("\nOutput options:\n"));
}
