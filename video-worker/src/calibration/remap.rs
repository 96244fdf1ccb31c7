//! Our own bilinear remap of packed BGR8 frames with AVX2, used instead of OpenCV's `remap`
//! where the CPU has AVX2 (OpenCV 4.6's costs 3.7 ms of CPU per 720p frame, which alone is
//! 11% of a core at 30 fps; see docs/BENCHMARKS.md, "Lens undistortion (issue 13)").
//!
//! It reproduces OpenCV's fixed-point `INTER_LINEAR` remap with `BORDER_CONSTANT` 0 from the
//! same maps (`CV_16SC2` integer source coordinates + `CV_16UC1` index into the 32x32
//! interpolation table). OpenCV's table weights are `(32 - wx)(32 - wy)/1024` etc., exactly
//! representable in its 15-bit fixed point, so blending horizontally with 5-bit weights, then
//! vertically, and rounding once at the end gives the same byte.
//!
//! At start the maps become a [`CompactMap`]: per output pixel the source coordinates and the
//! two 5-bit fractions. Pixels whose 2x2 neighbourhood is not wholly inside the source (and
//! the one whose 8-byte reads would pass the end of the source) go to a short list handled by
//! scalar code afterwards, so the SIMD loop has no branches.

/// Which remap implementation a [`super::Remapper`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// OpenCV's `imgproc::remap`: every CPU (the fallback, e.g. on aarch64 boards).
    OpenCv,
    /// Our AVX2 kernel: x86-64 CPUs with AVX2.
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Kernel {
        if Kernel::Avx2.available() {
            Kernel::Avx2
        } else {
            Kernel::OpenCv
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Kernel::OpenCv => true,
            Kernel::Avx2 => avx2_detected(),
        }
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kernel::OpenCv => "opencv",
            Kernel::Avx2 => "avx2",
        })
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_detected() -> bool {
    false
}

/// One of OpenCV's 32 sub-pixel steps per pixel (`INTER_TAB_SIZE`).
const TAB: u32 = 32;

/// A pixel the scalar code computes: its 2x2 neighbourhood is not wholly inside the source.
#[derive(Debug, Clone, Copy)]
struct EdgePixel {
    /// Index of the output pixel (row-major).
    index: u32,
    /// Source column of the top-left neighbour (may be outside the source).
    sx: i16,
    /// Source row of the top-left neighbour (may be outside the source).
    sy: i16,
    /// Horizontal fraction, in 1/32 pixel.
    wx: u8,
    /// Vertical fraction, in 1/32 pixel.
    wy: u8,
}

/// The remap maps in the form the kernel reads: 6 bytes per output pixel.
#[derive(Debug, Clone)]
pub struct CompactMap {
    src_width: i32,
    src_height: i32,
    /// Per output pixel: source column (low i16) and row (high i16) of the top-left
    /// neighbour; (0, 0) for the pixels in `edge`, so the SIMD reads stay inside the source.
    xy: Vec<u32>,
    /// Per output pixel: `wx | wy << 8`, the fractions in 1/32 pixel.
    w: Vec<u16>,
    /// The pixels the scalar code computes, in output order.
    edge: Vec<EdgePixel>,
}

impl CompactMap {
    /// Converts OpenCV's fixed-point maps for a `src_width` x `src_height` source: `xy` holds
    /// the `CV_16SC2` map (x, y per output pixel) and `idx` the `CV_16UC1` table index
    /// (`wy * 32 + wx`), or is empty for whole-pixel maps. The source must be at least 3x2.
    pub fn new(
        xy: &[[i16; 2]],
        idx: &[u16],
        src_width: i32,
        src_height: i32,
    ) -> Result<CompactMap, String> {
        if src_width < 3 || src_height < 2 || src_width > i16::MAX as i32 {
            return Err(format!(
                "the remap kernel needs a source of 3x2 to 32767 pixels wide, not \
                 {src_width}x{src_height}"
            ));
        }
        if !idx.is_empty() && idx.len() != xy.len() {
            return Err(format!(
                "the remap maps differ in size: {} coordinates but {} table indexes",
                xy.len(),
                idx.len()
            ));
        }
        if xy.len() > u32::MAX as usize {
            return Err(format!("a remap map of {} pixels is too large", xy.len()));
        }
        let mut map = CompactMap {
            src_width,
            src_height,
            xy: Vec::with_capacity(xy.len()),
            w: Vec::with_capacity(xy.len()),
            edge: Vec::new(),
        };
        for (i, &[sx, sy]) in xy.iter().enumerate() {
            let k = idx.get(i).copied().unwrap_or(0) as u32 & (TAB * TAB - 1);
            let (wx, wy) = ((k % TAB) as u8, (k / TAB) as u8);
            let (x, y) = (sx as i32, sy as i32);
            let inside = x >= 0 && y >= 0 && x < src_width - 1 && y < src_height - 1;
            // This one's bottom neighbours end the source: the kernel's 8-byte read of them
            // would pass the end of a packed source by two bytes.
            let last = x == src_width - 2 && y == src_height - 2;
            if inside && !last {
                map.xy.push(sx as u16 as u32 | (sy as u16 as u32) << 16);
            } else {
                map.xy.push(0);
                map.edge.push(EdgePixel {
                    index: i as u32,
                    sx,
                    sy,
                    wx,
                    wy,
                });
            }
            map.w.push(wx as u16 | (wy as u16) << 8);
        }
        Ok(map)
    }

    /// Number of output pixels.
    pub fn len(&self) -> usize {
        self.xy.len()
    }

    /// Whether the map has no pixel.
    pub fn is_empty(&self) -> bool {
        self.xy.is_empty()
    }

    /// How many output pixels the scalar code computes (border and edge pixels).
    pub fn edge_pixels(&self) -> usize {
        self.edge.len()
    }

    /// Remaps `src` (BGR8, rows `stride` bytes apart, at least up to the end of the last
    /// row's last pixel) into `dst` (packed BGR8, 3 bytes per map pixel), with the AVX2
    /// kernel, on `threads` threads (1 or 2: the calling one, and one more for the second
    /// half of the rows). Errs when the CPU has no AVX2 or a size does not fit; never writes
    /// outside `dst`.
    pub fn remap(
        &self,
        src: &[u8],
        stride: usize,
        dst: &mut [u8],
        threads: usize,
    ) -> Result<(), String> {
        if !Kernel::Avx2.available() {
            return Err("the avx2 remap kernel needs a CPU with AVX2; this one has none".into());
        }
        let (w, h) = (self.src_width as usize, self.src_height as usize);
        if stride < w * 3 || stride > i16::MAX as usize {
            return Err(format!(
                "the source rows are {stride} bytes apart; the remap kernel takes {} to 32767",
                w * 3
            ));
        }
        let need = (h - 1) * stride + w * 3;
        if src.len() < need {
            return Err(format!(
                "the source holds {} bytes, a {w}x{h} frame with rows {stride} bytes apart \
                 needs {need}",
                src.len()
            ));
        }
        if dst.len() != self.len() * 3 {
            return Err(format!(
                "the destination holds {} bytes, the remap writes {}",
                dst.len(),
                self.len() * 3
            ));
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY (both calls): AVX2 is present and the stride and source length are
            // those checked above; each part of `dst` is 3 bytes per pixel from `first` on,
            // inside the map (its length was checked above), as `remap_avx2` requires.
            let part =
                |first: usize, dst: &mut [u8]| unsafe { remap_avx2(self, src, stride, first, dst) };
            let half = self.len() / 2 / 8 * 8;
            if threads >= 2 && half > 0 {
                let (a, b) = dst.split_at_mut(half * 3);
                std::thread::scope(|s| {
                    s.spawn(|| part(half, b));
                    part(0, a);
                });
            } else {
                part(0, dst);
            }
        }
        Ok(())
    }

    /// One output pixel by scalar code, with OpenCV's BORDER_CONSTANT 0 semantics.
    fn sample(&self, src: &[u8], stride: usize, e: EdgePixel, out: &mut [u8]) {
        let (x, y) = (e.sx as i32, e.sy as i32);
        if x >= self.src_width || y >= self.src_height || x < -1 || y < -1 {
            // Wholly outside (most edge pixels of a zoomed-out view): the border value.
            out[..3].fill(0);
            return;
        }
        let (wx, wy) = (e.wx as u32, e.wy as u32);
        let weights = [
            (TAB - wx) * (TAB - wy),
            wx * (TAB - wy),
            (TAB - wx) * wy,
            wx * wy,
        ];
        let mut acc = [512u32; 3];
        for (n, weight) in weights.into_iter().enumerate() {
            let x = e.sx as i32 + (n & 1) as i32;
            let y = e.sy as i32 + (n >> 1) as i32;
            if x < 0 || y < 0 || x >= self.src_width || y >= self.src_height {
                continue; // outside neighbours count as the border value, 0
            }
            let at = y as usize * stride + x as usize * 3;
            for c in 0..3 {
                acc[c] += src[at + c] as u32 * weight;
            }
        }
        for c in 0..3 {
            out[c] = (acc[c] >> 10) as u8;
        }
    }

    /// The pixel `i` as an [`EdgePixel`], from the compact entries (for pixels not in `edge`).
    fn entry(&self, i: usize) -> EdgePixel {
        let (xy, w) = (self.xy[i], self.w[i]);
        EdgePixel {
            index: i as u32,
            sx: xy as u16 as i16,
            sy: (xy >> 16) as u16 as i16,
            wx: w as u8,
            wy: (w >> 8) as u8,
        }
    }
}

/// The AVX2 kernel for the output pixels `first..first + dst.len() / 3` of `map`: 8 pixels
/// per iteration; the pixels after the last whole group of 8 that can be stored without
/// writing past `dst`, then the part's edge pixels, by scalar code.
///
/// # Safety
/// The CPU must have AVX2. `stride` must be at least `map.src_width * 3` and at most 32767,
/// `src` must hold at least `(map.src_height - 1) * stride + map.src_width * 3` bytes and
/// `dst` a multiple of 3 bytes, with `first + dst.len() / 3 <= map.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn remap_avx2(map: &CompactMap, src: &[u8], stride: usize, first: usize, dst: &mut [u8]) {
    use std::arch::x86_64::*;

    /// Per 128-bit half: lane k's bytes (wx, wx, wy, wy).
    const DUP: [i8; 32] = [
        0, 0, 1, 1, 4, 4, 5, 5, 8, 8, 9, 9, 12, 12, 13, 13, //
        0, 0, 1, 1, 4, 4, 5, 5, 8, 8, 9, 9, 12, 12, 13, 13,
    ];
    /// Per 8 bytes B G R B' G' R' . . of two neighbours: (B, B', G, G', R, R', 0, 0).
    const PAIRS: [i8; 32] = [
        0, 3, 1, 4, 2, 5, -1, -1, 8, 11, 9, 12, 10, 13, -1, -1, //
        0, 3, 1, 4, 2, 5, -1, -1, 8, 11, 9, 12, 10, 13, -1, -1,
    ];
    /// The (32 - wx, wx) byte pair of the half's pixels 0 and 1, once per channel.
    const H_LO: [i8; 32] = [
        0, 1, 0, 1, 0, 1, 0, 1, 4, 5, 4, 5, 4, 5, 4, 5, //
        0, 1, 0, 1, 0, 1, 0, 1, 4, 5, 4, 5, 4, 5, 4, 5,
    ];
    /// The same for the half's pixels 2 and 3.
    const H_HI: [i8; 32] = [
        8, 9, 8, 9, 8, 9, 8, 9, 12, 13, 12, 13, 12, 13, 12, 13, //
        8, 9, 8, 9, 8, 9, 8, 9, 12, 13, 12, 13, 12, 13, 12, 13,
    ];
    /// The (32 - wy, wy) pair of the half's pixel 0 as i16, once per channel.
    const V0: [i8; 32] = [
        2, -1, 3, -1, 2, -1, 3, -1, 2, -1, 3, -1, 2, -1, 3, -1, //
        2, -1, 3, -1, 2, -1, 3, -1, 2, -1, 3, -1, 2, -1, 3, -1,
    ];
    const V1: [i8; 32] = [
        6, -1, 7, -1, 6, -1, 7, -1, 6, -1, 7, -1, 6, -1, 7, -1, //
        6, -1, 7, -1, 6, -1, 7, -1, 6, -1, 7, -1, 6, -1, 7, -1,
    ];
    const V2: [i8; 32] = [
        10, -1, 11, -1, 10, -1, 11, -1, 10, -1, 11, -1, 10, -1, 11, -1, //
        10, -1, 11, -1, 10, -1, 11, -1, 10, -1, 11, -1, 10, -1, 11, -1,
    ];
    const V3: [i8; 32] = [
        14, -1, 15, -1, 14, -1, 15, -1, 14, -1, 15, -1, 14, -1, 15, -1, //
        14, -1, 15, -1, 14, -1, 15, -1, 14, -1, 15, -1, 14, -1, 15, -1,
    ];
    /// Four 4-byte pixels (B, G, R, 0) to 12 bytes of BGR, per half.
    const PACK3: [i8; 32] = [
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, //
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
    ];

    let n = dst.len() / 3;
    let (xys, wv) = (&map.xy[first..first + n], &map.w[first..first + n]);
    // SAFETY: each table is 32 bytes.
    let [dup, pairs, h_lo, h_hi, v0, v1, v2, v3, pack3] =
        [DUP, PAIRS, H_LO, H_HI, V0, V1, V2, V3, PACK3]
            .map(|t| unsafe { _mm256_loadu_si256(t.as_ptr() as *const __m256i) });
    let coef = _mm256_set1_epi32(((stride as i32) << 16) | 3);
    let c32 = _mm256_set1_epi8(TAB as i8);
    let odd = _mm256_set1_epi16(0xFF00u16 as i16);
    let round = _mm256_set1_epi32(512);
    let base = src.as_ptr();
    let out = dst.as_mut_ptr();
    let mut offs = [0u32; 8];
    let mut i = 0;
    while i + 8 <= n && i * 3 + 28 <= dst.len() {
        // SAFETY: `i + 8 <= n` keeps the 8-entry loads inside `xys` and `wv`, and
        // `i * 3 + 28 <= dst.len()` both 16-byte stores inside `dst`. Every map entry is (0, 0)
        // or a top-left corner (x, y) with x <= w - 2, y <= h - 2, not (w - 2, h - 2) (see
        // `CompactMap::new`), so the 8-byte reads at y * stride + x * 3 and one row down end
        // inside `src`: in the last row x <= w - 3 leaves 3 * w - (3 * x + 8) >= 1 byte, and a
        // row above has a whole row after it. The source is at least 3x2, so (0, 0) reads
        // inside too. The offsets fit in i32: y * stride < 32767 * 32767. The prefetch entry
        // `(i + 192).min(n - 1)` is inside `xys` (n >= 8), and a prefetch never faults.
        unsafe {
            // Plain 8-byte loads rather than AVX2 gathers: on AMD's Zen the gathers cost
            // three quarters of the time (perf), the loads a fraction.
            let xy = _mm256_loadu_si256(xys.as_ptr().add(i) as *const __m256i);
            _mm256_storeu_si256(
                offs.as_mut_ptr() as *mut __m256i,
                _mm256_madd_epi16(xy, coef),
            );
            // Prefetch the source rows of the pixel 192 ahead: without it the loop waits on
            // memory for frames that arrive cold (the worker's case), 1.9 against 1.2 ms per
            // 720p frame (`remap_bench 150 1 cold`; 192 did better than 64 and as well as 512).
            let ahead = *xys.get_unchecked((i + 192).min(n - 1));
            let ahead = (ahead >> 16) as usize * stride + (ahead & 0xFFFF) as usize * 3;
            _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(ahead) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(ahead + stride) as *const i8);
            let at = |k: usize| base.add(offs[k] as usize);
            let t = |k: usize| std::ptr::read_unaligned(at(k) as *const i64);
            let b = |k: usize| std::ptr::read_unaligned(at(k).add(stride) as *const i64);
            // Pixels 0, 1 | 4, 5 and 2, 3 | 6, 7: each 8 bytes B G R B' G' R' . . of the
            // top-left and top-right neighbours (the bottom row likewise).
            let top_a = _mm256_set_epi64x(t(5), t(4), t(1), t(0));
            let top_b = _mm256_set_epi64x(t(7), t(6), t(3), t(2));
            let bot_a = _mm256_set_epi64x(b(5), b(4), b(1), b(0));
            let bot_b = _mm256_set_epi64x(b(7), b(6), b(3), b(2));
            let wraw = _mm256_cvtepu16_epi32(_mm_loadu_si128(wv.as_ptr().add(i) as *const __m128i));
            let wd = _mm256_shuffle_epi8(wraw, dup);
            // Per pixel the bytes (32 - wx, wx, 32 - wy, wy).
            let wts = _mm256_blendv_epi8(_mm256_sub_epi8(c32, wd), wd, odd);
            let (hw_lo, hw_hi) = (
                _mm256_shuffle_epi8(wts, h_lo),
                _mm256_shuffle_epi8(wts, h_hi),
            );
            // (B, B', G, G', R, R', 0, 0) per pixel, blended to (B, G, R, 0) as i16.
            let t_lo = _mm256_maddubs_epi16(_mm256_shuffle_epi8(top_a, pairs), hw_lo);
            let t_hi = _mm256_maddubs_epi16(_mm256_shuffle_epi8(top_b, pairs), hw_hi);
            let b_lo = _mm256_maddubs_epi16(_mm256_shuffle_epi8(bot_a, pairs), hw_lo);
            let b_hi = _mm256_maddubs_epi16(_mm256_shuffle_epi8(bot_b, pairs), hw_hi);
            let r0 = _mm256_madd_epi16(
                _mm256_unpacklo_epi16(t_lo, b_lo),
                _mm256_shuffle_epi8(wts, v0),
            );
            let r1 = _mm256_madd_epi16(
                _mm256_unpackhi_epi16(t_lo, b_lo),
                _mm256_shuffle_epi8(wts, v1),
            );
            let r2 = _mm256_madd_epi16(
                _mm256_unpacklo_epi16(t_hi, b_hi),
                _mm256_shuffle_epi8(wts, v2),
            );
            let r3 = _mm256_madd_epi16(
                _mm256_unpackhi_epi16(t_hi, b_hi),
                _mm256_shuffle_epi8(wts, v3),
            );
            let r0 = _mm256_srli_epi32::<10>(_mm256_add_epi32(r0, round));
            let r1 = _mm256_srli_epi32::<10>(_mm256_add_epi32(r1, round));
            let r2 = _mm256_srli_epi32::<10>(_mm256_add_epi32(r2, round));
            let r3 = _mm256_srli_epi32::<10>(_mm256_add_epi32(r3, round));
            // Per half: pixels 0..3 (4..7), 4 bytes each, in order.
            let px = _mm256_packus_epi16(_mm256_packs_epi32(r0, r1), _mm256_packs_epi32(r2, r3));
            let bgr = _mm256_shuffle_epi8(px, pack3);
            let at = out.add(i * 3);
            _mm_storeu_si128(at as *mut __m128i, _mm256_castsi256_si128(bgr));
            _mm_storeu_si128(
                at.add(12) as *mut __m128i,
                _mm256_extracti128_si256::<1>(bgr),
            );
        }
        i += 8;
    }
    for j in i..n {
        map.sample(
            src,
            stride,
            map.entry(first + j),
            &mut dst[j * 3..j * 3 + 3],
        );
    }
    let lo = map.edge.partition_point(|e| (e.index as usize) < first);
    let hi = map.edge.partition_point(|e| (e.index as usize) < first + n);
    for &e in &map.edge[lo..hi] {
        let j = e.index as usize - first;
        map.sample(src, stride, e, &mut dst[j * 3..j * 3 + 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Calibration, Remapper};
    use super::*;
    use config::{CalibrationConfig, Framing, LensModel};
    use opencv::core::{Mat, Scalar, CV_32FC2, CV_8UC3};
    use opencv::prelude::*;

    fn random_frame(w: i32, h: i32, seed: u64) -> Mat {
        opencv::core::set_rng_seed(seed as i32).unwrap();
        let mut m = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(0.0)).unwrap();
        opencv::core::randu(&mut m, &Scalar::all(0.0), &Scalar::all(256.0)).unwrap();
        m
    }

    /// Remaps `src` with both kernels; returns the largest difference of a byte and the
    /// number of pixels the AVX2 kernel left to the scalar code. The brief allows 1 grey
    /// level; the tests ask for 0, which holds because OpenCV's fixed-point weights are exact
    /// products of the 5-bit fractions, so any difference is a bug.
    fn compare(remap: &mut Remapper, src: &Mat) -> (u8, usize) {
        let n = remap.width() as usize * remap.height() as usize * 3;
        remap.set_kernel(Kernel::OpenCv).unwrap();
        let mut want = vec![0u8; n];
        remap.remap_into(src, &mut want).unwrap();
        remap.set_kernel(Kernel::Avx2).unwrap();
        assert_eq!(remap.kernel(), Kernel::Avx2);
        let mut got = vec![7u8; n];
        remap.set_threads(2);
        remap.remap_into(src, &mut got).unwrap();
        let mut one = vec![9u8; n];
        remap.set_threads(1);
        remap.remap_into(src, &mut one).unwrap();
        assert!(got == one, "the kernel on two threads differs from one");
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        (worst, remap.compact.as_ref().unwrap().edge_pixels())
    }

    fn lens(w: i32, h: i32, model: LensModel) -> Calibration {
        let (fx, cx, cy) = (
            0.8 * w as f64,
            (w as f64 - 1.0) / 2.0,
            (h as f64 - 1.0) / 2.0,
        );
        Calibration {
            camera_matrix: [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0],
            dist_coeffs: match model {
                LensModel::Pinhole => vec![-0.25, 0.06, 0.001, -0.002, 0.0],
                LensModel::Fisheye => vec![-0.05, 0.01, 0.0, 0.0],
            },
            image_width: w,
            image_height: h,
            model: Some(model),
        }
    }

    #[test]
    fn the_kernel_is_avx2_exactly_where_the_cpu_has_it() {
        let mut r = Remapper::distort(
            &lens(64, 48, LensModel::Pinhole).camera_matrix,
            &[0.1, 0.0, 0.0, 0.0],
            64,
            48,
        )
        .unwrap();
        assert_eq!(r.kernel(), Kernel::detect());
        r.set_kernel(Kernel::OpenCv).unwrap();
        assert_eq!(r.kernel(), Kernel::OpenCv);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            Kernel::detect() == Kernel::Avx2,
            std::arch::is_x86_feature_detected!("avx2")
        );
        if !Kernel::Avx2.available() {
            let e = r.set_kernel(Kernel::Avx2).unwrap_err();
            assert!(e.contains("needs AVX2"), "{e}");
            assert_eq!(r.kernel(), Kernel::OpenCv);
        }
        // Frames too small for our kernel keep OpenCV's, and still remap.
        let mut tiny = Remapper::distort(
            &lens(2, 2, LensModel::Pinhole).camera_matrix,
            &[0.1, 0.0, 0.0, 0.0],
            2,
            2,
        )
        .unwrap();
        assert_eq!(tiny.kernel(), Kernel::OpenCv);
        assert!(tiny.set_kernel(Kernel::Avx2).is_err());
        let mut out = [0u8; 12];
        tiny.remap_into(&random_frame(2, 2, 1), &mut out).unwrap();
    }

    #[test]
    fn avx2_equals_opencv_on_pinhole_and_fisheye_lenses_with_their_borders() {
        if !Kernel::Avx2.available() {
            return the_kernel_is_avx2_exactly_where_the_cpu_has_it();
        }
        for (w, h) in [(1280, 720), (333, 97)] {
            let src = random_frame(w, h, 7);
            for model in [LensModel::Pinhole, LensModel::Fisheye] {
                for framing in [Framing::Same, Framing::All] {
                    let cfg = CalibrationConfig {
                        file: "test".into(),
                        model,
                        framing,
                    };
                    let mut r = Remapper::undistort(&lens(w, h, model), &cfg).unwrap();
                    let (worst, edge) = compare(&mut r, &src);
                    assert_eq!(worst, 0, "{w}x{h} {model} {framing}: off by {worst}");
                    if framing == Framing::All {
                        // Zoomed out: the frame's border samples outside the source.
                        assert!(
                            edge > (w + h) as usize,
                            "{w}x{h} {model}: {edge} edge pixels"
                        );
                    }
                }
            }
        }
        // The synthetic source's distortion maps (an odd size: undistortPoints is slow).
        let (w, h) = (333, 97);
        let k = lens(w, h, LensModel::Pinhole).camera_matrix;
        let mut r = Remapper::distort(&k, &[0.2, 0.05, 0.0, 0.0], w, h).unwrap();
        let (worst, _) = compare(&mut r, &random_frame(w, h, 9));
        assert_eq!(worst, 0, "distort maps: off by {worst}");
    }

    #[test]
    fn avx2_equals_opencv_on_random_maps_reaching_past_every_edge() {
        if !Kernel::Avx2.available() {
            return the_kernel_is_avx2_exactly_where_the_cpu_has_it();
        }
        for (w, h) in [(333, 97), (3, 2), (17, 5)] {
            let mut fmap =
                Mat::new_rows_cols_with_default(h, w, CV_32FC2, Scalar::all(0.0)).unwrap();
            opencv::core::randu(&mut fmap, &Scalar::all(-2.5), &Scalar::all(w as f64 + 1.5))
                .unwrap();
            // Rows: a second random draw for y in [-2.5, h + 1.5).
            let mut ys = Mat::new_rows_cols_with_default(h, w, CV_32FC2, Scalar::all(0.0)).unwrap();
            opencv::core::randu(&mut ys, &Scalar::all(-2.5), &Scalar::all(h as f64 + 1.5)).unwrap();
            for y in 0..h {
                for x in 0..w {
                    let yv = ys.at_2d::<opencv::core::Vec2f>(y, x).unwrap()[1];
                    fmap.at_2d_mut::<opencv::core::Vec2f>(y, x).unwrap()[1] = yv;
                }
            }
            // Every pixel of the last 2x2 block, including the one read at the source's end.
            for (i, (x, y)) in [(w - 2, h - 2), (w - 1, h - 1), (w - 1.5f32 as i32, h - 2)]
                .into_iter()
                .enumerate()
            {
                let p = fmap.at_2d_mut::<opencv::core::Vec2f>(0, i as i32).unwrap();
                *p = opencv::core::Vec2f::from([x as f32 + 0.4, y as f32 + 0.7]);
            }
            let (mut map1, mut map2) = (Mat::default(), Mat::default());
            opencv::imgproc::convert_maps(
                &fmap,
                &Mat::default(),
                &mut map1,
                &mut map2,
                opencv::core::CV_16SC2,
                false,
            )
            .unwrap();
            let mut r = Remapper::from_maps(map1, map2, w, h);
            let (worst, edge) = compare(&mut r, &random_frame(w, h, 3));
            assert_eq!(worst, 0, "{w}x{h}: off by {worst}");
            assert!(edge > 0, "{w}x{h}: no edge pixel");
        }
    }

    #[test]
    fn a_strided_source_remaps_like_opencv() {
        if !Kernel::Avx2.available() {
            return the_kernel_is_avx2_exactly_where_the_cpu_has_it();
        }
        let (w, h) = (333, 97);
        let big = random_frame(w + 21, h + 9, 5);
        // A view into a larger frame: rows are (w + 21) * 3 bytes apart.
        let step = (w + 21) as usize * 3;
        let start = big.data().wrapping_add(4 * step + 13 * 3);
        // SAFETY: the view's rows lie inside `big` (4 + 97 <= 106 rows, 13 + 333 <= 354
        // columns), which outlives it and which nothing writes while it is alive.
        let src =
            unsafe { Mat::new_rows_cols_with_data_unsafe(h, w, CV_8UC3, start as *mut _, step) }
                .unwrap();
        assert!(!src.is_continuous());
        let cfg = CalibrationConfig {
            file: "test".into(),
            model: LensModel::Pinhole,
            framing: Framing::All,
        };
        let mut r = Remapper::undistort(&lens(w, h, LensModel::Pinhole), &cfg).unwrap();
        let (worst, _) = compare(&mut r, &src);
        assert_eq!(worst, 0, "strided: off by {worst}");
    }

    #[test]
    fn the_kernel_reads_and_writes_only_its_buffers() {
        if !Kernel::Avx2.available() {
            return the_kernel_is_avx2_exactly_where_the_cpu_has_it();
        }
        let (w, h) = (5i32, 3i32);
        // Every output pixel samples the source's last 2x2 block or beyond it.
        let n = 37;
        let xy: Vec<[i16; 2]> = (0..n)
            .map(|i| [(w - 3 + i % 3) as i16, (h - 3 + i % 3) as i16])
            .collect();
        let idx: Vec<u16> = (0..n).map(|i| (i * 37 % 1024) as u16).collect();
        let map = CompactMap::new(&xy, &idx, w, h).unwrap();
        // A packed source of exactly its bytes, so a read past the end would be out of bounds
        // of the Vec (and the result wrong).
        let src: Vec<u8> = (0..(w * h * 3) as u8).collect();
        let mut buf = vec![0xAAu8; n as usize * 3 + 64];
        let (head, rest) = buf.split_at_mut(32);
        let (dst, _tail) = rest.split_at_mut(n as usize * 3);
        map.remap(&src, w as usize * 3, dst, 1).unwrap();
        let want: Vec<u8> = (0..n as usize)
            .flat_map(|i| {
                let e = EdgePixel {
                    index: i as u32,
                    sx: xy[i][0],
                    sy: xy[i][1],
                    wx: (idx[i] % 32) as u8,
                    wy: (idx[i] / 32) as u8,
                };
                let mut px = [0u8; 3];
                map.sample(&src, w as usize * 3, e, &mut px);
                px
            })
            .collect();
        assert_eq!(dst, &want[..]);
        // Two threads: the first half's last group of 8 must not spill into the second.
        dst.fill(0x55);
        map.remap(&src, w as usize * 3, dst, 2).unwrap();
        assert_eq!(dst, &want[..]);
        assert!(head.iter().all(|&b| b == 0xAA));
        assert!(buf[32 + n as usize * 3..].iter().all(|&b| b == 0xAA));
        // Wrong sizes are refused, not read or written past.
        let e = map.remap(&src[1..], w as usize * 3, &mut vec![0; n as usize * 3], 1);
        assert!(e.unwrap_err().contains("needs 45"));
        let e = map.remap(&src, w as usize * 3, &mut [0; 3], 1);
        assert!(e.unwrap_err().contains("the remap writes 111"));
    }
}
