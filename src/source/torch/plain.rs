//! Plain pickles: `.pkl` / `.pickle` files (`pickle.dump` of dicts or lists of NumPy arrays
//! and torch tensors, protocols 2 to 5; a tensor's storage is a nested torch.save, read by
//! `pickle/nested.rs`) and PaddlePaddle's `.pdparams` / `.pdopt` (`paddle.save`: a pickled state
//! dict of NumPy arrays). Read by the same restricted unpickler as torch files, executing
//! nothing; arrays are tensors (`pickle/numpy.rs`), named as in a torch checkpoint (state-dict
//! keys, nested containers joined with `/`). Large array bytes are read from where they lie in
//! the file, never held whole.

use anyhow::{Context, Result};

use std::path::PathBuf;

use super::{build, Naming, TorchOptions, TorchSource};
use crate::input::FileRange;
use crate::source::{pickle, Input, OpenOptions, Reader, Sniff};
use crate::tensor::Source;

pub static READER: Reader = Reader {
    name: "pickle",
    about: "a pickle of NumPy arrays (.pkl, Paddle .pdparams/.pdopt; never executed)",
    extensions: &[".pkl", ".pickle", ".pdparams", ".pdopt", ".pdtensor"],
    sniff,
    open,
};

/// A pickle opens with `PROTO 2..5`: `Yes` with one of the extensions, else `Maybe`.
fn sniff(input: &Input) -> Sniff {
    match input.head.as_slice() {
        [0x80, 2..=5, ..] if input.has_extension(READER.extensions) => Sniff::Yes,
        [0x80, 2..=5, b'}' | b']' | 0x95 | b'c' | b'(', ..] => Sniff::Maybe,
        _ => Sniff::No,
    }
}

fn open(input: &Input, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    // A pickle of NumPy arrays needs NumPy's globals, `--weights-only` or not.
    let mut torch_opts = TorchOptions::from(opts);
    torch_opts.pickle.strict_numpy = false;
    let src = open_pickle(
        &input.display,
        input.files.clone(),
        input.data()?.clone(),
        &input.stem,
        &torch_opts,
    )?;
    Ok(Box::new(src))
}

/// Opens a plain pickle of arrays; `stem` names a pickle of one bare array.
pub fn open_pickle(
    path: &str,
    files: Vec<PathBuf>,
    data: FileRange,
    stem: &str,
    opts: &TorchOptions,
) -> Result<TorchSource> {
    let loaded = pickle::load_range(&data, &opts.pickle).context("the pickle")?;
    let naming = Naming {
        classes: loaded.classes,
        blobs: loaded.blobs,
        pickle: Some(data.slice(0, loaded.consumed)?),
        max_bytes: opts.max_bytes,
        ..Default::default()
    };
    build(
        path,
        files,
        loaded.value,
        stem,
        Default::default(),
        false,
        naming,
    )
}
