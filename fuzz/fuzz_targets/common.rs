// Shared by the fuzz targets: read every tensor of a source to the end, discarding the bytes,
// so that each reader's streaming paths run on the fuzzed input too.
use tensor2npy::tensor::Source;

#[allow(dead_code)]
pub fn drain(src: &mut dyn Source) {
    for i in 0..src.len() {
        let Ok(meta) = src.meta(i) else { continue };
        let mut budget: u64 = 64 << 20; // stop runaway fills early; the tool itself bounds them by flags
        let mut sink = |c: &[u8]| {
            budget = budget.saturating_sub(c.len() as u64 + 1);
            if budget == 0 {
                anyhow::bail!("budget")
            }
            Ok(())
        };
        let _ = if meta.dtype.item_size().is_some() {
            src.read_dense(i, 1 << 16, &mut sink)
        } else {
            src.read_strings(i, &mut sink)
        };
    }
}
