//! Python keyword arguments to the command line's options: `bf16="bits"` is `--bf16 bits`,
//! `select=["a*", "b"]` two `--select`, `skip_unsupported=True` the flag, `cast={"f64": "f32"}`
//! `--cast f64=f32`, `from_="gguf"` `--from gguf`. The words go through the command's own clap
//! parser, so the Python options are the command line's (names, values, defaults, checks), and
//! a mistake is the command's usage error. The parsed command line becomes the readers'
//! settings in `cmd/settings.rs`, as for the command itself.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyTuple};

use crate::cli::{Cli, Command, ConvertArgs, ListArgs, VerifyArgs};
use crate::error::usage;

/// The convert options that shape an output file rather than the arrays; `load` and `open`
/// refuse them.
pub const OUTPUT_ONLY: &[&str] = &[
    "output", "to", "compress", "update", "manifest", "stats", "jobs",
];

/// One or several inputs: a path, a URL, or a sequence of them.
pub fn inputs(obj: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let paths: Vec<PathBuf> = obj.extract()?;
        if paths.is_empty() {
            return Err(super::errors::raise(
                obj.py(),
                usage("no input given (an empty list)"),
            ));
        }
        return Ok(paths);
    }
    Ok(vec![obj.extract()?])
}

/// The command line of `tensor2npy <sub> <flags from kwargs> -- <inputs>`, parsed by clap.
/// `refused` names options this function does not take.
fn parse(
    py: Python<'_>,
    sub: &str,
    inputs: &[PathBuf],
    kwargs: Option<&Bound<'_, PyDict>>,
    refused: &[&str],
    function: &str,
) -> PyResult<Command> {
    let cli = Cli::command();
    let command = cli
        .find_subcommand(sub)
        .expect("internal: the subcommand exists");
    let mut argv: Vec<OsString> = vec!["tensor2npy".into(), sub.into()];
    let fail = |msg: String| super::errors::raise(py, usage(msg));
    if let Some(kwargs) = kwargs {
        for (key, value) in kwargs.iter() {
            let key: String = key.extract()?;
            let long = key.trim_end_matches('_').replace('_', "-");
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(long.as_str()) && !a.is_positional())
                .filter(|_| !refused.contains(&long.replace('-', "_").as_str()));
            let Some(arg) = arg else {
                return Err(fail(format!(
                    "{function}() got an unexpected keyword argument '{key}' (its options are those of `tensor2npy {sub}`, written with underscores)"
                )));
            };
            if value.is_none() {
                continue;
            }
            let flag = matches!(arg.get_action(), ArgAction::SetTrue);
            if flag {
                if !value.is_instance_of::<PyBool>() {
                    return Err(fail(format!("{key} takes True or False")));
                }
                if value.extract::<bool>()? {
                    argv.push(format!("--{long}").into());
                }
                continue;
            }
            for v in values(&value, &key)? {
                let mut a = OsString::from(format!("--{long}="));
                a.push(v);
                argv.push(a);
            }
        }
    }
    argv.push("--".into());
    argv.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
    match Cli::try_parse_from(argv) {
        Ok(cli) => Ok(cli.command),
        Err(e) => {
            // clap's first paragraph, without "error: " and the usage lines.
            let text = e.to_string();
            let first = text.split("\n\n").next().unwrap_or(&text);
            let words: Vec<&str> = first
                .trim_start_matches("error: ")
                .split_whitespace()
                .collect();
            Err(fail(words.join(" ")))
        }
    }
}

/// The words one keyword argument stands for: a scalar is one, a list or tuple one per item, a
/// dict (`cast`) one `K=V` per item.
fn values(value: &Bound<'_, PyAny>, key: &str) -> PyResult<Vec<OsString>> {
    let word = |v: &Bound<'_, PyAny>| -> PyResult<OsString> {
        if v.is_instance_of::<PyBool>() {
            return Err(super::errors::raise(
                v.py(),
                usage(format!("{key} takes a value, not True or False")),
            ));
        }
        if let Ok(p) = v.extract::<PathBuf>() {
            return Ok(p.into_os_string());
        }
        Ok(v.str()?.to_string().into())
    };
    if let Ok(d) = value.cast::<PyDict>() {
        return d
            .iter()
            .map(|(k, v)| {
                let mut w = word(&k)?;
                w.push("=");
                w.push(word(&v)?);
                Ok(w)
            })
            .collect();
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        return value.try_iter()?.map(|v| word(&v?)).collect();
    }
    Ok(vec![word(value)?])
}

/// `convert`'s options for `load` and `open`, or for `convert` itself (`refused` empty).
pub fn convert_args(
    py: Python<'_>,
    inputs: &[PathBuf],
    kwargs: Option<&Bound<'_, PyDict>>,
    refused: &[&str],
    function: &str,
) -> PyResult<ConvertArgs> {
    match parse(py, "convert", inputs, kwargs, refused, function)? {
        Command::Convert(args) => Ok(args),
        _ => unreachable!("convert parses as convert"),
    }
}

pub fn list_args(
    py: Python<'_>,
    inputs: &[PathBuf],
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<ListArgs> {
    match parse(
        py,
        "list",
        inputs,
        kwargs,
        &["json", "metadata"],
        "list_tensors",
    )? {
        Command::List(args) => Ok(args),
        _ => unreachable!("list parses as list"),
    }
}

pub fn verify_args(
    py: Python<'_>,
    inputs: &[PathBuf],
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<VerifyArgs> {
    match parse(py, "verify", inputs, kwargs, &["quiet"], "verify")? {
        Command::Verify(args) => Ok(args),
        _ => unreachable!("verify parses as verify"),
    }
}
