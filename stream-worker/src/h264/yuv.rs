//! BGR8 to I420 (planar YUV 4:2:0), BT.601 limited range, in integer arithmetic.
//!
//! OpenH264 takes I420 only. Its crate's own RGB path costs about 9.6 ms per 720p frame; this
//! one works on two rows at a time with 8-bit fixed-point coefficients (the classic BT.601
//! integer formulas) and averages each 2x2 block's BGR before computing its chroma, which is
//! what a decoder's 4:2:0 upsampling expects. The encoder signals BT.601 limited range in the
//! SPS (VUI), so players convert back with the same matrix.

use openh264::formats::YUVSource;

/// Why a frame could not be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    /// 4:2:0 needs even sizes (the config's `video.width`/`video.height` are even).
    #[error("frame size {width}x{height} is odd; H.264 4:2:0 needs an even width and height (set video.width and video.height to even numbers)")]
    OddSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The buffer is shorter than the geometry says.
    #[error("frame data is {len} bytes, too short for {width}x{height} with stride {stride}")]
    ShortData {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Bytes per row.
        stride: u32,
        /// Bytes given.
        len: usize,
    },
}

/// One I420 picture: the Y plane (`width` x `height`) followed by U and V (half size each way).
#[derive(Debug, Clone, Default)]
pub struct I420 {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl I420 {
    /// An empty picture; [`I420::convert_bgr`] sizes it.
    pub fn new() -> I420 {
        I420::default()
    }

    /// Width and height in pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The three planes (Y, U, V).
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let ys = self.width * self.height;
        let cs = ys / 4;
        let (y, rest) = self.data.split_at(ys);
        let (u, v) = rest.split_at(cs);
        (y, u, &v[..cs])
    }

    /// Converts a BGR8 image of `width` x `height` with rows `stride` bytes apart into this
    /// picture, reusing its buffer.
    pub fn convert_bgr(
        &mut self,
        bgr: &[u8],
        width: u32,
        height: u32,
        stride: u32,
    ) -> Result<(), ConvertError> {
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(ConvertError::OddSize { width, height });
        }
        let (w, h, s) = (width as usize, height as usize, stride as usize);
        let needed = if h == 0 { 0 } else { s * (h - 1) + w * 3 };
        if s < w * 3 || bgr.len() < needed {
            return Err(ConvertError::ShortData {
                width,
                height,
                stride,
                len: bgr.len(),
            });
        }
        self.width = w;
        self.height = h;
        let ys = w * h;
        self.data.resize(ys + ys / 2, 0);
        let (y_plane, chroma) = self.data.split_at_mut(ys);
        let (u_plane, v_plane) = chroma.split_at_mut(ys / 4);
        let cw = w / 2;
        for row in 0..h / 2 {
            let top = &bgr[2 * row * s..2 * row * s + w * 3];
            let bottom = &bgr[(2 * row + 1) * s..(2 * row + 1) * s + w * 3];
            let (y_top, y_bottom) = y_plane[2 * row * w..(2 * row + 2) * w].split_at_mut(w);
            let u_row = &mut u_plane[row * cw..(row + 1) * cw];
            let v_row = &mut v_plane[row * cw..(row + 1) * cw];
            convert_row_pair(top, bottom, y_top, y_bottom, u_row, v_row);
        }
        Ok(())
    }
}

#[inline(always)]
fn luma(b: i32, g: i32, r: i32) -> u8 {
    // Y = 16 + (65.738 R + 129.057 G + 25.064 B) / 256, rounded; the result is 16..=235.
    (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
}

/// Two source rows to two Y rows and one row each of U and V.
#[inline(always)]
fn convert_row_pair(
    top: &[u8],
    bottom: &[u8],
    y_top: &mut [u8],
    y_bottom: &mut [u8],
    u_row: &mut [u8],
    v_row: &mut [u8],
) {
    // Fixed-size chunks let the compiler drop the bounds checks and vectorise.
    let blocks = top
        .chunks_exact(6)
        .zip(bottom.chunks_exact(6))
        .zip(y_top.chunks_exact_mut(2))
        .zip(y_bottom.chunks_exact_mut(2))
        .zip(u_row.iter_mut().zip(v_row.iter_mut()));
    for ((((t, b), yt), yb), (u, v)) in blocks {
        let px = |p: &[u8], i: usize| (i32::from(p[i]), i32::from(p[i + 1]), i32::from(p[i + 2]));
        let (b0, g0, r0) = px(t, 0);
        let (b1, g1, r1) = px(t, 3);
        let (b2, g2, r2) = px(b, 0);
        let (b3, g3, r3) = px(b, 3);
        yt[0] = luma(b0, g0, r0);
        yt[1] = luma(b1, g1, r1);
        yb[0] = luma(b2, g2, r2);
        yb[1] = luma(b3, g3, r3);
        // The sums of four pixels carry two extra bits: shift by 10 instead of 8.
        let (bs, gs, rs) = (b0 + b1 + b2 + b3, g0 + g1 + g2 + g3, r0 + r1 + r2 + r3);
        *u = (((-38 * rs - 74 * gs + 112 * bs + 512) >> 10) + 128) as u8;
        *v = (((112 * rs - 94 * gs - 18 * bs + 512) >> 10) + 128) as u8;
    }
}

impl YUVSource for I420 {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        self.planes().0
    }

    fn u(&self) -> &[u8] {
        self.planes().1
    }

    fn v(&self) -> &[u8] {
        self.planes().2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BT.601 limited-range definition in floating point.
    fn reference(b: f64, g: f64, r: f64) -> (f64, f64, f64) {
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        (y, u, v)
    }

    fn pseudo_random_image(h: usize, stride: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..stride * h)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn matches_the_float_reference_within_one_level() {
        let (w, h, stride) = (34, 18, 34 * 3 + 5);
        let img = pseudo_random_image(h, stride);
        let mut pic = I420::new();
        pic.convert_bgr(&img, w as u32, h as u32, stride as u32)
            .unwrap();
        let (yp, up, vp) = pic.planes();
        let at = |x: usize, y: usize| {
            let i = y * stride + x * 3;
            (
                f64::from(img[i]),
                f64::from(img[i + 1]),
                f64::from(img[i + 2]),
            )
        };
        let mut worst = 0f64;
        for y in 0..h {
            for x in 0..w {
                let (b, g, r) = at(x, y);
                let want = reference(b, g, r).0;
                worst = worst.max((f64::from(yp[y * w + x]) - want).abs());
            }
        }
        for cy in 0..h / 2 {
            for cx in 0..w / 2 {
                let mut sum = (0.0, 0.0, 0.0);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (b, g, r) = at(2 * cx + dx, 2 * cy + dy);
                    sum = (sum.0 + b / 4.0, sum.1 + g / 4.0, sum.2 + r / 4.0);
                }
                let (_, u, v) = reference(sum.0, sum.1, sum.2);
                worst = worst.max((f64::from(up[cy * w / 2 + cx]) - u).abs());
                worst = worst.max((f64::from(vp[cy * w / 2 + cx]) - v).abs());
            }
        }
        assert!(worst <= 1.0, "largest difference {worst} levels");
    }

    #[test]
    fn extremes_stay_in_range() {
        let mut pic = I420::new();
        for (bgr, want) in [
            ([0u8, 0, 0], (16u8, 128u8, 128u8)),
            ([255, 255, 255], (235, 128, 128)),
            ([255, 0, 0], (41, 240, 110)),
            ([0, 0, 255], (81, 90, 240)),
        ] {
            let img: Vec<u8> = bgr.iter().copied().cycle().take(2 * 2 * 3).collect();
            pic.convert_bgr(&img, 2, 2, 6).unwrap();
            let (y, u, v) = pic.planes();
            let got = (y[0], u[0], v[0]);
            let close = |a: u8, b: u8| a.abs_diff(b) <= 1;
            assert!(
                close(got.0, want.0) && close(got.1, want.1) && close(got.2, want.2),
                "{bgr:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn bad_geometry_is_an_error_not_a_panic() {
        let mut pic = I420::new();
        assert!(matches!(
            pic.convert_bgr(&[0; 27], 3, 3, 9),
            Err(ConvertError::OddSize { .. })
        ));
        assert!(matches!(
            pic.convert_bgr(&[0; 20], 4, 2, 12),
            Err(ConvertError::ShortData { .. })
        ));
        assert!(matches!(
            pic.convert_bgr(&[0; 100], 4, 2, 6),
            Err(ConvertError::ShortData { .. })
        ));
        // The last row needs no padding after it.
        pic.convert_bgr(&[0; 12 + 12], 4, 2, 12).unwrap();
        assert_eq!(pic.size(), (4, 2));
        assert_eq!(pic.y().len(), 8);
        assert_eq!(pic.u().len(), 2);
    }
}
