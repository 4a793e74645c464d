//! What a `convert` run did, output by output: written, left alone by `--update`, or failed
//! (with `--keep-going`, which goes on after a failure). `cmd/convert.rs` records each outcome
//! here; the summary line on stderr and the final error come from here, so that the line
//! counts what was really written.

use std::time::Duration;

use anyhow::{anyhow, Error, Result};

use crate::error::Interrupted;

/// The outcomes of one run.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Go on after a failure (`--keep-going`), instead of stopping at the first.
    pub keep_going: bool,
    written: Vec<String>,
    written_tensors: u64,
    written_bytes: u64,
    up_to_date: usize,
    failed: Vec<Error>,
}

impl Outcomes {
    pub fn new(keep_going: bool) -> Outcomes {
        Outcomes {
            keep_going,
            ..Default::default()
        }
    }

    pub fn written(&mut self, output: String, tensors: u64, bytes: u64) {
        self.written.push(output);
        self.written_tensors += tensors;
        self.written_bytes += bytes;
    }

    pub fn up_to_date(&mut self) {
        self.up_to_date += 1;
    }

    /// A failure of one input or output: kept for the end with `--keep-going` (where it is
    /// printed at once, too), else returned. An interrupt always stops the run.
    pub fn failed(&mut self, e: Error) -> Result<()> {
        if !self.keep_going || e.downcast_ref::<Interrupted>().is_some() {
            return Err(e);
        }
        eprintln!(
            "tensor2npy: error: {} (going on: --keep-going)",
            crate::sink::names::shown(&format!("{e:#}"))
        );
        self.failed.push(e);
        Ok(())
    }

    /// `Ok(())` when nothing failed, else one error that counts the failures (each was printed
    /// when it happened): exit status 1, or 75 when every failure was transient (a retry may
    /// succeed: `error::is_transient`).
    pub fn finish(&mut self) -> Result<()> {
        let transient = self.failed.iter().all(crate::error::is_transient);
        let counted = match self.failed.len() {
            0 => return Ok(()),
            n => anyhow!(
                "{n} input{} or output{} failed (each is reported above); {} output{} written",
                if n == 1 { "" } else { "s" },
                if n == 1 { "" } else { "s" },
                self.written.len(),
                if self.written.len() == 1 {
                    " was"
                } else {
                    "s were"
                }
            ),
        };
        match transient {
            true => Err(counted.context(crate::error::Transient(
                "every failure was transient (exit 75: retrying may succeed)".into(),
            ))),
            false => Err(counted),
        }
    }

    /// The summary line: what was written, what `--update` left alone, what failed.
    pub fn line(&self, elapsed: Duration) -> String {
        let n = self.written_tensors;
        let mut s = if self.written.is_empty() {
            "wrote nothing".to_string()
        } else {
            format!(
                "wrote {n} tensor{} ({}) to {}",
                if n == 1 { "" } else { "s" },
                human_bytes(self.written_bytes),
                self.written.join(", ")
            )
        };
        if self.up_to_date > 0 {
            s.push_str(&format!(
                "; {} output{} up to date (--update)",
                self.up_to_date,
                if self.up_to_date == 1 { "" } else { "s" }
            ));
        }
        if !self.failed.is_empty() {
            s.push_str(&format!("; {} failed", self.failed.len()));
        }
        format!("{s} in {:.1} s", elapsed.as_secs_f64())
    }
}

/// A byte count for people: `512 B`, `3.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_only_what_was_written_and_names_what_update_left_alone() {
        let mut o = Outcomes::new(false);
        o.up_to_date();
        o.written("b.npz".into(), 3, 2048);
        o.up_to_date();
        o.up_to_date();
        let line = o.line(Duration::from_millis(200));
        assert_eq!(
            line,
            "wrote 3 tensors (2.0 KiB) to b.npz; 3 outputs up to date (--update) in 0.2 s"
        );
        let mut all = Outcomes::new(false);
        all.up_to_date();
        assert_eq!(
            all.line(Duration::ZERO),
            "wrote nothing; 1 output up to date (--update) in 0.0 s"
        );
    }

    #[test]
    fn keep_going_keeps_failures_for_the_end_but_never_an_interrupt() {
        let mut o = Outcomes::new(true);
        o.failed(anyhow!("a.safetensors: truncated")).unwrap();
        o.failed(anyhow!("b.safetensors: truncated")).unwrap();
        assert!(o.failed(anyhow!(Interrupted)).is_err());
        o.written("c.npz".into(), 1, 4);
        let e = o.finish().unwrap_err();
        assert!(
            format!("{e}").starts_with("2 inputs or outputs failed"),
            "{e}"
        );
        let mut stop = Outcomes::new(false);
        assert!(stop.failed(anyhow!("x")).is_err());
        assert!(stop.finish().is_ok());
    }

    #[test]
    fn kept_failures_exit_75_only_when_every_one_was_transient() {
        let transient = || anyhow!(crate::error::Transient("503 after the retries".into()));
        let mut o = Outcomes::new(true);
        o.failed(transient()).unwrap();
        o.failed(transient()).unwrap();
        assert!(crate::error::is_transient(&o.finish().unwrap_err()));
        let mut mixed = Outcomes::new(true);
        mixed.failed(transient()).unwrap();
        mixed.failed(anyhow!("data checksum mismatch")).unwrap();
        assert!(!crate::error::is_transient(&mixed.finish().unwrap_err()));
    }
}
