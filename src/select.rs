//! `--select` / `--exclude`: which tensors a command takes, by glob on their names; shared by
//! `convert`, `list` and `verify` (`cmd/`).

use anyhow::{bail, Result};
use globset::{Glob, GlobMatcher};

use crate::error::usage;

/// `--select` / `--exclude` globs, remembering which `--select` patterns matched something.
pub struct Selector {
    select: Vec<(String, GlobMatcher, bool)>,
    exclude: Vec<GlobMatcher>,
}

impl Selector {
    pub fn new(select: &[String], exclude: &[String]) -> Result<Selector> {
        let compile = |g: &String| {
            Glob::new(g)
                .map(|g| g.compile_matcher())
                .map_err(|e| usage(format!("invalid glob '{g}': {e}")))
        };
        Ok(Selector {
            select: select
                .iter()
                .map(|g| Ok((g.clone(), compile(g)?, false)))
                .collect::<Result<_>>()?,
            exclude: exclude.iter().map(compile).collect::<Result<_>>()?,
        })
    }

    pub fn keep(&self, name: &str) -> bool {
        (self.select.is_empty() || self.select.iter().any(|(_, m, _)| m.is_match(name)))
            && !self.exclude.iter().any(|m| m.is_match(name))
    }

    /// Like `keep`, and notes which `--select` patterns matched.
    pub fn record(&mut self, name: &str) -> bool {
        for (_, m, seen) in &mut self.select {
            *seen |= m.is_match(name);
        }
        self.keep(name)
    }

    /// Fails when a `--select` pattern matched none of the names recorded.
    pub fn check_matched(&self) -> Result<()> {
        match self.select.iter().find(|(_, _, seen)| !seen) {
            Some((pattern, _, _)) => bail!("--select '{pattern}' matches no tensor"),
            None => Ok(()),
        }
    }
}
