#![no_main]
//! DeepSpeed ZeRO consolidation plans (`source/deepspeed/plan.rs`): names, shapes, partition
//! lengths and paddings taken from the input (as a corrupt or hostile checkpoint could record
//! them) are planned as stage 1/2, stage 3 and stage-3 frozen parameters. Whatever the numbers,
//! planning must not panic or overflow, and every plan it accepts must cover each tensor's
//! elements exactly, each span inside the partition it reads.
use libfuzzer_sys::fuzz_target;
use tensor2npy::source::deepspeed::plan::{self, Out, Piece};

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    /// A number, small usually, sometimes huge (overflow paths).
    fn num(&mut self) -> u64 {
        match self.byte() {
            255 => u64::MAX - self.byte() as u64,
            254 => 1 << (self.byte() % 64),
            b => b as u64,
        }
    }
}

fn check(outs: &[Out], pieces: &[Piece]) {
    for o in outs {
        let numel = o
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .expect("accepted shape");
        assert_eq!(o.spans.iter().map(|s| s.len).sum::<u64>(), numel, "{o:?}");
        for s in &o.spans {
            let n = pieces
                .iter()
                .find(|p| p.0 == s.flat)
                .expect("known piece")
                .1;
            assert!(
                s.start.checked_add(s.len).is_some_and(|e| e <= n),
                "{s:?} past {n}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let world = (b.byte() % 4 + 1) as usize;
    let groups = (b.byte() % 3 + 1) as usize;
    let mut pieces = Vec::new();
    let parts: Vec<Vec<Piece>> = (0..world)
        .map(|_| {
            (0..groups)
                .map(|_| {
                    let p = (pieces.len(), b.num());
                    pieces.push(p);
                    p
                })
                .collect()
        })
        .collect();
    let shapes: Vec<Vec<(String, Vec<u64>)>> = (0..groups)
        .map(|g| {
            (0..b.byte() % 4)
                .map(|i| {
                    (
                        format!("g{g}p{i}"),
                        (0..b.byte() % 3).map(|_| b.num()).collect(),
                    )
                })
                .collect()
        })
        .collect();
    let paddings: Vec<Vec<u64>> = shapes
        .iter()
        .map(|s| s.iter().map(|_| b.num() % 8).collect())
        .collect();
    let with_pads = b.byte() & 1 == 1;
    if let Ok(outs) = plan::zero2(&shapes, &parts, with_pads.then_some(&paddings[..])) {
        check(&outs, &pieces);
    }
    let merged: Vec<(String, Vec<u64>)> = shapes.iter().flatten().cloned().collect();
    if let Ok(outs) = plan::zero3(&merged, &parts) {
        check(&outs, &pieces);
    }
    let frags: Vec<Piece> = parts.iter().map(|p| p[0]).collect();
    if let Some((name, shape)) = merged.first() {
        if let Ok(out) = plan::zero3_frozen(name, shape, &frags) {
            check(&[out], &pieces);
        }
    }
});
