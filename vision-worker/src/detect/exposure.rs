//! Exposure: per-channel gains that lift a dim, colour-cast frame to a normal exposure before
//! anything else looks at it.
//!
//! A dim room (or a camera with a short exposure) leaves every colour at a third of its usual
//! level with a cast: the table's cloth threshold, the dark balls' contrast on the cloth and
//! the kinds' colour tests all assume a normally exposed frame. The bright end of each channel
//! (the white cue ball, ferrules, the light balls' highlights) stands for white, so scaling each
//! channel to bring it up to a normal level removes the gain and the cast at once
//! ("white patch" balance). A normally exposed frame is left exactly as it is, so clear scenes
//! pay only for one sparse histogram.

/// The bright end of a channel: this share of the sampled pixels lies above it.
const TOP_SHARE: f32 = 0.001;
/// The level the bright end is brought up to.
const TARGET: f32 = 235.0;
/// Frames whose darkest channel needs less than this gain are left alone.
const MIN_GAIN: f32 = 1.5;
/// The largest ratio between two channels' gains: a room light's colour cast, not the colour of
/// whatever happens to be brightest (a hand, a lamp's reflection).
const MAX_CAST: f32 = 1.35;
/// Frames needing at least this gain in every channel have their colour cast removed too.
const CAST_GAIN: f32 = 2.0;
/// The largest gain applied (beyond it the noise drowns everything anyway).
const MAX_GAIN: f32 = 4.0;

/// Sigma (working pixels) of the Gaussian a lifted frame's working image is smoothed with
/// before the balls are looked for: the gain multiplies the sensor noise too, and at three
/// times a normal frame's noise a dark ball on cloth of its own colour sinks into it (its
/// outline no longer stands out of the cloth's spread). One pixel keeps a ball's outline (five
/// to six pixels of radius) and cuts the noise to under a third.
pub(crate) const DENOISE_SIGMA: f64 = 1.0;

/// Side of the smoothing kernel, in pixels.
pub(crate) const DENOISE_TAPS: i32 = 5;

/// The share of independent pixel noise (its standard deviation) that the `taps`-wide
/// Gaussian of `sigma` keeps: the sum of the squared weights of its 1-D kernel (the 2-D kernel
/// is their product, so the 2-D sum is this squared, and its square root this again).
pub(crate) fn noise_kept(sigma: f64, taps: i32) -> f32 {
    let half = taps / 2;
    let w: Vec<f64> = (-half..=half)
        .map(|i| (-f64::from(i * i) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    w.iter().map(|x| (x / sum).powi(2)).sum::<f64>() as f32
}

/// Per-channel (B, G, R) gains for a BGR8 image, or `None` when it is exposed well enough.
/// Samples every third pixel of every second row.
pub(crate) fn gains(img: &[u8], w: usize, h: usize) -> Option<[f32; 3]> {
    let mut hist = [[0u32; 256]; 3];
    let mut n = 0u32;
    for y in (0..h).step_by(2) {
        let row = &img[y * w * 3..(y + 1) * w * 3];
        for px in row.chunks_exact(9) {
            for c in 0..3 {
                hist[c][px[c] as usize] += 1;
            }
            n += 1;
        }
    }
    if n < 100 {
        return None;
    }
    let top = ((n as f32 * TOP_SHARE) as u32).max(1);
    let levels = hist.map(|h| {
        let mut above = 0u32;
        for v in (0..256).rev() {
            above += h[v];
            if above >= top {
                return v as f32;
            }
        }
        0.0
    });
    let g = levels.map(|l| (TARGET / l.max(1.0)).min(MAX_GAIN));
    let lo = g.iter().cloned().fold(f32::INFINITY, f32::min);
    if lo < MIN_GAIN {
        return None;
    }
    // A cast is only taken out of a really dim frame: in a moderately lit one the brightest
    // pixels are as likely a lamp's coloured reflection as a white ball.
    let cast = if lo >= CAST_GAIN { MAX_CAST } else { 1.0 };
    Some(g.map(|x| x.min(cast * lo)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cloth-green image with a white patch (a cue ball) of `white` (B, G, R).
    fn scene(white: [u8; 3], cloth: [u8; 3]) -> (Vec<u8>, usize, usize) {
        let (w, h) = (320, 180);
        let mut img = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let c = if (150..170).contains(&x) && (80..100).contains(&y) {
                    white
                } else {
                    cloth
                };
                img.extend_from_slice(&c);
            }
        }
        (img, w, h)
    }

    #[test]
    fn a_well_exposed_frame_is_left_alone() {
        let (img, w, h) = scene([240, 240, 240], [40, 120, 30]);
        assert_eq!(gains(&img, w, h), None);
    }

    #[test]
    fn a_dim_frame_is_lifted_to_a_normal_white() {
        let (img, w, h) = scene([80, 80, 80], [13, 40, 10]);
        let g = gains(&img, w, h).expect("a dim frame needs a gain");
        for k in g {
            assert!((k * 80.0 - TARGET).abs() < 2.0, "gains {g:?}");
        }
    }

    #[test]
    fn a_dim_frame_loses_its_cast_within_bounds() {
        // A bluish room light: blue 1.15, red 0.85 of the neutral level.
        let (img, w, h) = scene([92, 80, 68], [15, 40, 9]);
        let g = gains(&img, w, h).expect("a dim frame needs a gain");
        assert!(g[2] > g[1] && g[1] > g[0], "red lifted most: {g:?}");
        assert!(g[2] <= MAX_CAST * g[0] + 1e-4, "cast bounded: {g:?}");
    }

    #[test]
    fn a_moderately_dim_frame_keeps_its_colours() {
        // Needs less than CAST_GAIN: one gain for all channels, whatever the bright end's hue.
        let (img, w, h) = scene([150, 140, 130], [30, 70, 20]);
        let g = gains(&img, w, h).expect("needs a gain");
        assert_eq!(g[0], g[1]);
        assert_eq!(g[1], g[2]);
    }

    #[test]
    fn the_denoising_keeps_the_share_of_noise_it_says() {
        use opencv::core::{Mat, Size, CV_8UC3};
        use opencv::prelude::*;
        // Grey 128 with independent noise of sigma 12 in every channel (a fixed generator).
        let (w, h) = (200usize, 150usize);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut gauss = || {
            // Sum of 12 uniforms minus 6: a unit Gaussian, near enough.
            (0..12)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 11) as f64 / (1u64 << 53) as f64
                })
                .sum::<f64>()
                - 6.0
        };
        let px: Vec<u8> = (0..w * h * 3)
            .map(|_| (128.0 + 12.0 * gauss()).round() as u8)
            .collect();
        let src = Mat::new_rows_cols_with_data::<u8>(h as i32, (w * 3) as i32, &px)
            .unwrap()
            .reshape(3, h as i32)
            .unwrap()
            .try_clone()
            .unwrap();
        assert_eq!(src.typ(), CV_8UC3);
        let mut dst = Mat::default();
        opencv::imgproc::gaussian_blur(
            &src,
            &mut dst,
            Size::new(DENOISE_TAPS, DENOISE_TAPS),
            DENOISE_SIGMA,
            DENOISE_SIGMA,
            opencv::core::BORDER_REPLICATE,
        )
        .unwrap();
        let std = |m: &Mat| {
            let d = m.data_bytes().unwrap();
            let n = d.len() as f64;
            let mean = d.iter().map(|&v| v as f64).sum::<f64>() / n;
            (d.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
        };
        let kept = std(&dst) / std(&src);
        let said = noise_kept(DENOISE_SIGMA, DENOISE_TAPS) as f64;
        assert!(
            said < 0.35,
            "the smoothing must cut the noise to a third: {said}"
        );
        // Rounding to 8 bits adds about 0.3 levels of noise to the smoothed image.
        assert!((kept - said).abs() < 0.03, "measured {kept}, said {said}");
    }

    #[test]
    fn a_black_frame_gets_the_largest_gain_at_most() {
        let img = vec![0u8; 320 * 180 * 3];
        assert_eq!(gains(&img, 320, 180), Some([MAX_GAIN; 3]));
    }
}
