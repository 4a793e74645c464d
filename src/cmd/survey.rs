//! The first pass of `convert` over each input's metadata, before anything is written: how many
//! tensors it contributes, their size as written, what `--skip-unsupported` leaves out, and
//! every reason to refuse (a dtype without a NumPy form, a size that overflows, the
//! `--max-output` budget of `budget.rs`). Called by `cmd/convert.rs`, one input at a time, so
//! that `--keep-going` can leave out an input.

use anyhow::{anyhow, Context, Result};

use crate::budget::OutputBudget;
use crate::pipeline::{npy_type, output_bytes};
use crate::select::Selector;
use crate::tensor::Source;

use super::settings::Settings;

/// The first pass over one input's metadata: how many tensors it contributes, their bytes as
/// written, and how many `--skip-unsupported` leaves out; every reason to refuse comes here,
/// before anything is written. Each tensor's `.npy` (header and data) is charged to `budget`,
/// which is left as it was when the input is refused.
pub fn survey(
    src: &dyn Source,
    selector: &mut Selector,
    settings: &Settings,
    budget: &mut OutputBudget,
) -> Result<(usize, u64, usize)> {
    let mut charged = *budget;
    let (mut n, mut bytes, mut skipped) = (0, 0u64, 0);
    for i in 0..src.len() {
        let meta = src
            .meta(i)
            .with_context(|| format!("{}: tensor {i}", src.display_path()))?;
        if !selector.record(&meta.name) {
            continue;
        }
        let context = || format!("{}: tensor '{}'", src.display_path(), meta.name);
        match npy_type(&meta, &settings.policy) {
            Some(t) => {
                let data = output_bytes(&meta, t).with_context(context)?;
                let header = crate::sink::npy::header(&t.descr(), &meta.shape).len() as u64;
                charged
                    .charge(
                        data.saturating_add(header),
                        &format!("its .npy ({data} bytes of data, a {header}-byte header)"),
                    )
                    .with_context(context)?;
                bytes = bytes
                    .checked_add(data)
                    .ok_or_else(|| anyhow!("the tensors add up to more than 2^64 bytes"))
                    .with_context(context)?;
            }
            None if settings.skip_unsupported => {
                skipped += 1;
                continue;
            }
            None => {
                let dtype = meta.dtype_shown();
                return Err(anyhow!(
                    "dtype {dtype} has no NumPy form (use --skip-unsupported to leave it out)"
                )
                .context(context()));
            }
        }
        n += 1;
    }
    *budget = charged;
    Ok((n, bytes, skipped))
}
