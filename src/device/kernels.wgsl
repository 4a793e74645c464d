// tensor2npy's device kernels. Every kernel writes one u32 of output per invocation and works
// on raw bits with integer arithmetic only, so results are bit-identical to the CPU path
// (`transform.rs`) on every adapter: no float builtins, no pack/unpack helpers, NaN payloads
// carried by hand.

struct Params {
    n_out_words: u32,
    n_elems: u32,
    // Byte order unit to reverse while loading (0 = none, 2, 4 or 8).
    swap: u32,
    // Kernel-specific: which conversion (widen16, narrow16) or how many bits (bytes8).
    mode: u32,
    in_size: u32,
    out_size: u32,
    // Bit 0: the source is signed; bit 1: the source is bool; bit 2: the target is bool.
    flags: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> lut: array<u32>;

fn bswap(x: u32) -> u32 {
    return (x >> 24u) | ((x >> 8u) & 0xff00u) | ((x << 8u) & 0xff0000u) | (x << 24u);
}

// Word `w` of the input, little-endian after any byte-order swap.
fn load_in(w: u32) -> u32 {
    switch params.swap {
        case 2u: {
            let x = src[w];
            return ((x & 0x00ff00ffu) << 8u) | ((x >> 8u) & 0x00ff00ffu);
        }
        case 4u: { return bswap(src[w]); }
        case 8u: { return bswap(src[w ^ 1u]); }
        default: { return src[w]; }
    }
}

fn in8(j: u32) -> u32 { return (load_in(j >> 2u) >> ((j & 3u) * 8u)) & 0xffu; }
fn in16(j: u32) -> u32 { return (load_in(j >> 1u) >> ((j & 1u) * 16u)) & 0xffffu; }

fn out_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + lid;
}

// float16 bits to float32 bits; NaN gets the quiet bit, as the half crate's conversion does.
fn f16_to_f32(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0x1fu) {
        if (m == 0u) { return sign | 0x7f800000u; }
        return sign | 0x7fc00000u | (m << 13u);
    }
    if (e == 0u) {
        if (m == 0u) { return sign; }
        let p = firstLeadingBit(m); // m = 1.x * 2^p, value = m * 2^-24
        return sign | ((p + 103u) << 23u) | ((m << (23u - p)) & 0x7fffffu);
    }
    return sign | ((e + 112u) << 23u) | (m << 13u);
}

// float32 bits to float16 bits, round to nearest even (mirrors transform::f32_to_f16_bits).
fn f32_to_f16(x: u32) -> u32 {
    let sign = (x >> 16u) & 0x8000u;
    let exp = (x >> 23u) & 0xffu;
    let man = x & 0x7fffffu;
    if (exp == 0xffu) {
        if (man == 0u) { return sign | 0x7c00u; }
        var r = 0x7c00u | (man >> 13u);
        if (r == 0x7c00u) { r = 0x7c01u; }
        return sign | r;
    }
    if (exp == 0u) { return sign; }
    let e = i32(exp) - 127;
    if (e > 15) { return sign | 0x7c00u; }
    var shift = 13;
    if (e < -14) { shift = 13 + (-14 - e); }
    if (shift > 24) { return sign; }
    let s = u32(shift);
    let mant = man | 0x800000u;
    let kept = mant >> s;
    let rem = mant & ((1u << s) - 1u);
    let halfway = 1u << (s - 1u);
    var bits = kept;
    if (e >= -14) { bits = (u32(e + 15) << 10u) | (kept & 0x3ffu); }
    if (rem > halfway || (rem == halfway && (bits & 1u) == 1u)) { bits = bits + 1u; }
    return sign | bits;
}

// float64 (as two words) to float32 bits, round to nearest even; NaN quieted with its payload.
fn f64_to_f32(lo: u32, hi: u32) -> u32 {
    let sign = hi & 0x80000000u;
    let exp = (hi >> 20u) & 0x7ffu;
    let mhi = hi & 0xfffffu;
    if (exp == 0x7ffu) {
        if ((mhi | lo) == 0u) { return sign | 0x7f800000u; }
        return sign | 0x7fc00000u | (mhi << 3u) | (lo >> 29u);
    }
    if (exp == 0u) { return sign; }
    let e = i32(exp) - 1023;
    if (e > 127) { return sign | 0x7f800000u; }
    if (e >= -126) {
        var bits = (u32(e + 127) << 23u) | (mhi << 3u) | (lo >> 29u);
        let rem = lo & 0x1fffffffu;
        if (rem > 0x10000000u || (rem == 0x10000000u && (bits & 1u) == 1u)) { bits = bits + 1u; }
        return sign | bits;
    }
    // A float32 subnormal: the 53-bit significand shifted right by s (30 <= s).
    let s = u32(-(e + 97));
    if (s > 54u) { return sign; }
    let h = mhi | 0x100000u;
    var kept = 0u;
    var rem_hi = 0u;
    var rem_lo = 0u;
    if (s < 32u) {
        kept = (h << (32u - s)) | (lo >> s);
        rem_lo = lo & ((1u << s) - 1u);
    } else {
        kept = h >> (s - 32u);
        rem_hi = h & ((1u << (s - 32u)) - 1u);
        rem_lo = lo;
    }
    var half_hi = 0u;
    var half_lo = 0u;
    if (s - 1u < 32u) { half_lo = 1u << (s - 1u); } else { half_hi = 1u << (s - 33u); }
    let above = rem_hi > half_hi || (rem_hi == half_hi && rem_lo > half_lo);
    let tie = rem_hi == half_hi && rem_lo == half_lo;
    if (above || (tie && (kept & 1u) == 1u)) { kept = kept + 1u; }
    return sign | kept;
}

// bfloat16 (mode 0) or float16 (mode 1) to float32.
@compute @workgroup_size(256)
fn widen16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wg, nwg, lid);
    if (i >= params.n_out_words) { return; }
    let h = in16(i);
    if (params.mode == 0u) { dst[i] = h << 16u; } else { dst[i] = f16_to_f32(h); }
}

// One-byte float formats (float8 family, float4) to float32 through a 256-entry table.
@compute @workgroup_size(256)
fn lut8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wg, nwg, lid);
    if (i >= params.n_out_words) { return; }
    dst[i] = lut[in8(i)];
}

// float32 (mode 0) or bfloat16 (mode 1) to float16, two per output word.
@compute @workgroup_size(256)
fn narrow16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wg, nwg, lid);
    if (i >= params.n_out_words) { return; }
    var word = 0u;
    for (var k = 0u; k < 2u; k = k + 1u) {
        let j = i * 2u + k;
        if (j < params.n_elems) {
            var f = 0u;
            if (params.mode == 0u) { f = load_in(j); } else { f = in16(j) << 16u; }
            word = word | (f32_to_f16(f) << (16u * k));
        }
    }
    dst[i] = word;
}

// float64 to float32.
@compute @workgroup_size(256)
fn narrow64(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wg, nwg, lid);
    if (i >= params.n_out_words) { return; }
    dst[i] = f64_to_f32(load_in(2u * i), load_in(2u * i + 1u));
}

// Sub-byte integers stored a byte each: keep the low `mode` bits, sign-extended when signed.
@compute @workgroup_size(256)
fn bytes8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wg, nwg, lid);
    if (i >= params.n_out_words) { return; }
    let bits = params.mode;
    var word = 0u;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let j = i * 4u + k;
        if (j < params.n_elems) {
            var b = in8(j) & ((1u << bits) - 1u);
            if ((params.flags & 1u) == 1u && (b >> (bits - 1u)) == 1u) {
                b = (b | (0xffu << bits)) & 0xffu;
            }
            word = word | (b << (8u * k));
        }
    }
    dst[i] = word;
}

// Integer and bool casts among 1-, 2- and 4-byte types: sign-extend or zero-extend, then
// truncate (numpy astype's wrapping), or test for non-zero into bool.
@compute @workgroup_size(256)
fn intcast(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wg, nwg, lid);
    if (i >= params.n_out_words) { return; }
    let per_word = 4u / params.out_size;
    let out_bits = params.out_size * 8u;
    var word = 0u;
    for (var k = 0u; k < per_word; k = k + 1u) {
        let j = i * per_word + k;
        if (j < params.n_elems) {
            var v = 0u;
            switch params.in_size {
                case 1u: { v = in8(j); }
                case 2u: { v = in16(j); }
                default: { v = load_in(j); }
            }
            let in_bits = params.in_size * 8u;
            if ((params.flags & 1u) == 1u && in_bits < 32u && (v >> (in_bits - 1u)) == 1u) {
                v = v | (0xffffffffu << in_bits);
            }
            if ((params.flags & 2u) == 2u) { v = select(0u, 1u, v != 0u); }
            if ((params.flags & 4u) == 4u) { v = select(0u, 1u, v != 0u); }
            var mask = 0xffffffffu;
            if (out_bits < 32u) { mask = (1u << out_bits) - 1u; }
            word = word | ((v & mask) << (out_bits * k));
        }
    }
    dst[i] = word;
}

// A byte-order swap alone: the output is the input with each element's bytes reversed.
@compute @workgroup_size(256)
fn swap_only(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wg, nwg, lid);
    if (i >= params.n_out_words) { return; }
    dst[i] = load_in(i);
}
