//! `--max-output BYTES`: one budget for everything a `convert` run writes (every output
//! together), for services converting files they did not make. `cmd/convert.rs` charges each
//! selected tensor's `.npy` bytes (header and data, before any `--compress`) during its first
//! pass over the metadata, so a run that would go past the budget is refused before anything is
//! created; the sizes are the ones the pipeline then writes (`pipeline::output_bytes`), and the
//! sinks refuse a member that is written past its declared length.

use anyhow::{bail, Result};

/// What one run may still write.
#[derive(Debug, Clone, Copy)]
pub struct OutputBudget {
    limit: Option<u64>,
    used: u64,
}

impl OutputBudget {
    /// A budget of `limit` bytes (`None`: unlimited).
    pub fn new(limit: Option<u64>) -> OutputBudget {
        OutputBudget { limit, used: 0 }
    }

    /// Charges `bytes` for tensor `what`; fails, saying how much was asked and allowed, when
    /// the run's total would pass the budget.
    pub fn charge(&mut self, bytes: u64, what: &str) -> Result<()> {
        let total = self.used.checked_add(bytes);
        if let Some(limit) = self.limit {
            match total {
                Some(t) if t <= limit => {}
                _ => bail!(
                    "{what} needs {bytes} bytes of output, and with the {} bytes before it the run would write more than --max-output ({limit} bytes); nothing was written",
                    self.used
                ),
            }
        }
        self.used = total.unwrap_or(u64::MAX);
        Ok(())
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_covers_the_whole_run_not_each_tensor() {
        let mut b = OutputBudget::new(Some(100));
        b.charge(60, "a").unwrap();
        b.charge(40, "b").unwrap();
        let e = b.charge(1, "c").unwrap_err().to_string();
        assert!(e.contains("--max-output (100 bytes)"), "{e}");
        assert!(e.contains("with the 100 bytes before it"), "{e}");
        let mut b = OutputBudget::new(Some(u64::MAX));
        b.charge(u64::MAX, "a").unwrap();
        assert!(b.charge(1, "b").is_err());
        let mut none = OutputBudget::new(None);
        none.charge(u64::MAX, "a").unwrap();
        none.charge(u64::MAX, "b").unwrap();
        assert_eq!(none.used(), u64::MAX);
    }
}
