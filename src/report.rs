//! Notes, warnings, the progress bar and the summary line, all on stderr; quiet with `--quiet`,
//! and no bar unless stderr is a terminal. The commands in `cmd/` and the pipeline talk to it.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress bar: the percentage, the bytes written of the total, the rate, and an estimate
/// of the time left.
const BAR: &str =
    "{spinner} {percent:>3}% [{bar:24}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left {wide_msg}";

/// Notes, warnings and the progress bar, all on stderr.
pub struct Reporter {
    quiet: bool,
    bar: ProgressBar,
    /// The bar is drawn (stderr is a terminal and not `--quiet`): only then is it updated, since
    /// even a hidden bar reads the clock on every update (1 % of a run of small records).
    live: bool,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        let bar = if !quiet && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(BAR)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        let live = !bar.is_hidden();
        Reporter { quiet, bar, live }
    }

    pub fn note(&self, msg: &str) {
        if !self.quiet {
            let msg = crate::sink::names::shown(msg);
            self.bar.suspend(|| eprintln!("tensor2npy: note: {msg}"));
        }
    }

    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            let msg = crate::sink::names::shown(msg);
            self.bar.suspend(|| eprintln!("tensor2npy: warning: {msg}"));
        }
    }

    pub fn add_total(&self, bytes: u64) {
        if self.live {
            self.bar.inc_length(bytes);
        }
    }

    pub fn set_message(&self, msg: &str) {
        if self.live {
            self.bar
                .set_message(crate::sink::names::shown(msg).into_owned());
        }
    }

    pub fn advance(&self, bytes: u64) {
        if self.live {
            self.bar.inc(bytes);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bar_shows_a_percentage_and_the_time_left() {
        assert!(indicatif::ProgressStyle::with_template(super::BAR).is_ok());
        assert!(super::BAR.contains("{percent") && super::BAR.contains("{eta}"));
    }
}
