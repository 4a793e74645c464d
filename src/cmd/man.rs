//! `tensor2npy man [SUBCOMMAND]`: prints the manual page that clap_mangen renders from the clap
//! definitions in `cli.rs`, so the page never drifts from `--help`. The committed copies in
//! `man/` are these pages (a test compares them).

use std::io::Write;

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::usage;
use crate::sink::io_error;

/// The roff source of the main page, or of one subcommand's page (`tensor2npy-convert(1)`).
pub fn page(subcommand: Option<&str>) -> Result<Vec<u8>> {
    // The plain version: the page is the same whichever features the binary was built with.
    let cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
    let cmd = match subcommand {
        None => cmd,
        Some(name) => {
            let Some(sub) = cmd.find_subcommand(name).cloned() else {
                return Err(usage(format!(
                    "no subcommand '{name}'; one of: {}",
                    cmd.get_subcommands()
                        .map(|c| c.get_name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            // The page of `tensor2npy convert` is named `tensor2npy-convert`.
            let page_name: &'static str = Box::leak(format!("tensor2npy-{name}").into_boxed_str());
            sub.name(page_name)
                .bin_name(format!("tensor2npy {name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .date("")
        .render(&mut out)
        .map_err(io_error)?;
    let page = String::from_utf8_lossy(&out).into_owned();
    Ok(sectioned(&page, &cmd).into_bytes())
}

/// clap_mangen's page with a SYNOPSIS that shows each option's value, and the text after the
/// options (which clap_mangen puts under EXTRA) in sections of their own: EXIT STATUS,
/// EXAMPLES, and one per heading of the help (`Output (-o):` becomes OUTPUT).
fn sectioned(page: &str, cmd: &clap::Command) -> String {
    let mut out = String::new();
    let mut lines = page.lines().peekable();
    while let Some(line) = lines.next() {
        match line {
            ".SH SYNOPSIS" => {
                out.push_str(line);
                out.push('\n');
                out.push_str(&synopsis(cmd));
                lines.next(); // clap_mangen's synopsis line
            }
            ".SH EXTRA" => {
                while lines.peek().is_some_and(|l| !l.starts_with(".SH ")) {
                    lines.next();
                }
                let after = cmd
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                out.push_str(&after_help_sections(&after));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Text escaped for roff, one line at a time.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// `name [-o|--output PATH] [--stack] ... <INPUT>...`, every option with its value.
fn synopsis(cmd: &clap::Command) -> String {
    let mut s = format!(
        "\\fB{}\\fR",
        roff(cmd.get_bin_name().unwrap_or(cmd.get_name()))
    );
    let mut positionals = Vec::new();
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let value = a
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
        let takes = a.get_action().takes_values();
        if a.is_positional() {
            let many = a.get_num_args().is_some_and(|n| n.max_values() > 1);
            let v = format!(
                "<\\fI{}\\fR>{}",
                roff(&value),
                if many { "..." } else { "" }
            );
            positionals.push(if a.is_required_set() {
                v
            } else {
                format!("[{v}]")
            });
            continue;
        }
        let mut names = Vec::new();
        if let Some(c) = a.get_short() {
            names.push(format!("\\fB\\-{c}\\fR"));
        }
        if let Some(l) = a.get_long() {
            names.push(format!("\\fB\\-\\-{}\\fR", roff(l)));
        }
        let mut opt = names.join("|");
        if takes {
            let optional = a.get_num_args().is_some_and(|n| n.min_values() == 0);
            if optional {
                opt.push_str(&format!("[=\\fI{}\\fR]", roff(&value)));
            } else {
                opt.push_str(&format!(" \\fI{}\\fR", roff(&value)));
            }
        }
        s.push_str(&format!(" [{opt}]"));
    }
    for p in positionals {
        s.push(' ');
        s.push_str(&p);
    }
    if cmd.has_subcommands() {
        s.push_str(" <\\fICOMMAND\\fR>");
    }
    s.push('\n');
    s
}

/// The paragraphs of the after-help texts that open a section of the page: the text they
/// start with, the section's name, and whether that text is dropped from the body.
const HEADINGS: &[(&str, &str, bool)] = &[
    ("Input formats", "INPUT FORMATS", false),
    ("Exit status:", "EXIT STATUS", true),
    ("Examples:", "EXAMPLES", true),
    ("Output (-o):", "OUTPUT", true),
    ("Data types:", "DATA TYPES", true),
];

/// The after-help text as sections: each paragraph that starts with a heading of [`HEADINGS`]
/// opens its section; the others go under NOTES (or stay in the section before them). The
/// lines are kept as they are (no filling), since they are laid out.
fn after_help_sections(text: &str) -> String {
    let mut out = String::new();
    let mut open: Option<&str> = None;
    for para in text.split("\n\n") {
        let (name, body) = match HEADINGS.iter().find(|(h, _, _)| para.starts_with(h)) {
            Some((h, name, true)) => {
                let rest = &para[h.len()..];
                (
                    *name,
                    rest.strip_prefix('\n')
                        .unwrap_or(rest.trim_start_matches(' ')),
                )
            }
            Some((_, name, false)) => (*name, para),
            None => (open.unwrap_or("NOTES"), para),
        };
        if open != Some(name) {
            out.push_str(&format!(".SH {name}\n"));
            open = Some(name);
        } else {
            out.push_str(".PP\n");
        }
        out.push_str(".nf\n");
        for l in body.lines() {
            out.push_str(&roff(l));
            out.push('\n');
        }
        out.push_str(".fi\n");
    }
    out
}
/// Every page: `(file name, roff)` for the main page and each subcommand's.
pub fn pages() -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = vec![("tensor2npy.1".to_string(), page(None)?)];
    for sub in Cli::command().get_subcommands() {
        let name = sub.get_name();
        out.push((format!("tensor2npy-{name}.1"), page(Some(name))?));
    }
    Ok(out)
}

pub fn run(subcommand: Option<&str>, write: Option<&Path>) -> Result<()> {
    if let Some(dir) = write {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, roff) in pages()? {
            let path = dir.join(name);
            std::fs::write(&path, roff)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        return Ok(());
    }
    let page = page(subcommand)?;
    std::io::stdout().write_all(&page).map_err(io_error)
}
