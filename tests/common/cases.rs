//! One runner for a format's manifest cases (`fixtures/<format>/manifest.json`): every good case
//! converted by the binary, with no extra arguments and with each of the format's extra
//! argument sets (small chunk sizes), and compared bit for bit with its oracle; every bad case
//! exits 1 with the manifest's error string and whatever else the format's error must name,
//! no panic, and nothing left behind.

use std::path::Path;
use std::process::{Command, Output};

use super::{assert_same_arrays, bin, files_in, manifest, read_npz, tempdir, Case};

/// How many good and bad cases ran.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    pub good: usize,
    pub bad: usize,
}

/// Runs every case under `fixtures/<dir>/`: good ones once plain and once with each of
/// `extras`; bad ones with the strings `also_named` gives for the case (besides the manifest's
/// `error`) required in the message.
pub fn run_manifest(
    dir: &str,
    extras: &[&[&str]],
    also_named: &dyn Fn(&Case) -> &'static [&'static str],
) -> Ran {
    let under = format!("/fixtures/{dir}/");
    let cases: Vec<Case> = manifest()
        .into_iter()
        .filter(|c| c.input.to_string_lossy().contains(&under))
        .collect();
    let mut ran = Ran { good: 0, bad: 0 };
    for case in cases {
        let what = format!("{} {:?}", case.input.display(), case.args);
        let tmp = tempdir();
        let out = tmp.path().join("out.npz");
        if let Some(oracle) = &case.oracle {
            let want = read_npz(oracle);
            assert!(!want.is_empty(), "{what}: an empty oracle");
            for extra in std::iter::once(&[][..]).chain(extras.iter().copied()) {
                let o = convert_case(&case, &out, extra);
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(o.status.success(), "{what} {extra:?}: {err}");
                assert_same_arrays(&read_npz(&out), &want, &format!("{what} {extra:?}"));
                std::fs::remove_file(&out).unwrap();
            }
            ran.good += 1;
        } else {
            let o = convert_case(&case, &out, &[]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{what}: {err}");
            let expected = case
                .error
                .as_deref()
                .expect("a case with no oracle has an error");
            assert!(err.contains(expected), "{what}: '{expected}' not in: {err}");
            for s in also_named(&case) {
                assert!(err.contains(s), "{what}: '{s}' not in: {err}");
            }
            assert!(!err.contains("panicked"), "{what}: {err}");
            assert!(
                files_in(tmp.path()).is_empty(),
                "{what}: output left behind"
            );
            ran.bad += 1;
        }
    }
    ran
}

/// `tensor2npy convert INPUT -o OUT` with the case's arguments, then `extra`.
fn convert_case(case: &Case, out: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .arg("convert")
        .arg(&case.input)
        .arg("-o")
        .arg(out)
        .args(&case.args)
        .args(extra)
        .output()
        .unwrap()
}

/// For formats whose errors must name nothing besides the manifest's string.
pub fn nothing_else(_: &Case) -> &'static [&'static str] {
    &[]
}
