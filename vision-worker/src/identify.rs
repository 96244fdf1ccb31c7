//! Ball numbers: what one frame says about a ball's number ([`evidence`]), and the per-frame
//! one-to-one assignment of numbers to tracks ([`assign`]).
//!
//! On a standard set every number has its own (colour, pattern) pair: 0 the white cue ball,
//! 8 the black, 1-7 solids and 9-15 stripes in yellow, blue, red, purple, orange, green and
//! maroon. The pattern comes from the detector's kind (solid or stripe), the colour from the
//! hue of the saturated pixels; red and maroon share a hue and differ in brightness. One frame
//! is weak evidence (a stripe's band may face away, a highlight may hide the hue), so the
//! tracker sums the evidence over the track and [`assign`] gives each number to at most one
//! track per frame, or none when no track is sure enough.
//!
//! Knows nothing of images or frames beyond the [`KindFeatures`] the detector measured.

use crate::model::{BallKind, KindFeatures};

/// Numbers on a standard set: the cue ball (0) and 1-15.
pub const NUMBERS: usize = 16;

/// Hue angle (radians) of the standard colours of 1-7 (and of the bands of 9-15), from their
/// usual sRGB values through the same opponent-colour vector the detector measures.
fn reference_hues() -> [f32; 7] {
    // BGR of yellow, blue, red, purple, orange, green, maroon.
    const BGR: [[f32; 3]; 7] = [
        [0.0, 190.0, 244.0],
        [170.0, 60.0, 16.0],
        [34.0, 30.0, 206.0],
        [132.0, 38.0, 92.0],
        [10.0, 106.0, 248.0],
        [62.0, 118.0, 8.0],
        [34.0, 26.0, 124.0],
    ];
    BGR.map(|[b, g, r]| hue_angle([r - 0.5 * (g + b), 0.866_025_4 * (g - b)]))
}

/// Brightness of red and maroon relative to the white of the cue ball and the stripes in the
/// same frame (standard colours: red's strongest channel is about 206 of white's 240,
/// maroon's 124), so the cloth colour and the light level do not matter.
const RED_VALUE: f32 = 0.86;
const MAROON_VALUE: f32 = 0.52;
/// The same relative to the cloth, for a frame without a white reference (a green cloth).
const RED_VALUE_CLOTH: f32 = 1.45;
const MAROON_VALUE_CLOTH: f32 = 0.85;
/// Spread of the hue around a reference (radians): shading, noise and white balance.
const HUE_SIGMA: f32 = 0.2;
/// Spread of the log brightness around a reference.
const VALUE_SIGMA: f32 = 0.25;
/// Below this fraction of saturated pixels the hue is not trusted.
const MIN_COLOUR: f32 = 0.04;

fn hue_angle(v: [f32; 2]) -> f32 {
    v[1].atan2(v[0])
}

/// The frame's white reference: the median brightness of the white of the balls that show a
/// good deal of it (the cue ball, stripes), relative to the cloth; `None` without any.
pub fn white_reference(features: impl Iterator<Item = KindFeatures>) -> Option<f32> {
    let mut v: Vec<f32> = features
        .filter(|f| f.white >= 0.3 && f.white_value > 0.0)
        .map(|f| f.white_value)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    Some(v[v.len() / 2])
}

/// Likelihood of each of the seven colours (index 0 = yellow .. 6 = maroon), summing to 1; even
/// when the features carry no usable colour. `white` is the frame's [`white_reference`].
pub fn colour_likelihood(f: &KindFeatures, white: Option<f32>) -> [f32; 7] {
    let chroma = (f.hue[0] * f.hue[0] + f.hue[1] * f.hue[1]).sqrt();
    if f.colour < MIN_COLOUR || chroma < 0.1 {
        return [1.0 / 7.0; 7];
    }
    let h = hue_angle(f.hue);
    let refs = reference_hues();
    let mut out = [0.0f32; 7];
    for (i, (o, r)) in out.iter_mut().zip(refs).enumerate() {
        let mut d = (h - r).abs();
        if d > std::f32::consts::PI {
            d = std::f32::consts::TAU - d;
        }
        let mut e = (d / HUE_SIGMA).powi(2);
        if i == 2 || i == 6 {
            let (v, want) = match white {
                Some(w) => (
                    f.value / w.max(0.05),
                    if i == 2 { RED_VALUE } else { MAROON_VALUE },
                ),
                None => (
                    f.value,
                    if i == 2 {
                        RED_VALUE_CLOTH
                    } else {
                        MAROON_VALUE_CLOTH
                    },
                ),
            };
            e += (v.max(0.05).ln() - want.ln()).powi(2) / VALUE_SIGMA.powi(2);
        }
        *o = (-0.5 * e).exp();
    }
    let sum: f32 = out.iter().sum();
    if sum < 1e-6 {
        return [1.0 / 7.0; 7];
    }
    out.map(|v| v / sum)
}

/// What one sighting of a ball says about its number: a probability for each of the 16
/// numbers (index = number), from the kind the detector decided and the colour; `white` is
/// the frame's [`white_reference`].
pub fn evidence(kind: BallKind, f: &KindFeatures, white: Option<f32>) -> [f32; NUMBERS] {
    let mut p = [0.0f32; NUMBERS];
    let c = colour_likelihood(f, white);
    // The pattern is more certain than the colour, but not certain: a stripe whose band
    // faces away looks solid-ish for a frame.
    let (cue, eight, solid, stripe) = match kind {
        // A stripe seen from its pole is white but for a rim of colour: a cue ball with
        // colour on it is less sure, so a plain white ball wins the 0 over it.
        BallKind::Cue if f.colour > 0.02 || f.ring_colour > 0.03 => (0.6, 0.02, 0.03, 0.35),
        BallKind::Cue => (0.9, 0.02, 0.02, 0.06),
        BallKind::Eight => (0.02, 0.9, 0.04, 0.04),
        BallKind::Solid => (0.01, 0.04, 0.8, 0.15),
        BallKind::Stripe => (0.05, 0.02, 0.13, 0.8),
        BallKind::Unknown => (0.1, 0.1, 0.4, 0.4),
    };
    p[0] = cue;
    p[8] = eight;
    for i in 0..7 {
        p[1 + i] = solid * c[i];
        p[9 + i] = stripe * c[i];
    }
    let sum: f32 = p.iter().sum();
    p.map(|v| v / sum)
}

/// Gives each row (a track) at most one number and each number to at most one row,
/// minimising the summed cost: `cost[row][number]`, or `null_cost[row]` for no number. Rows
/// whose best is "no number" get `None`. The Hungarian method, O(n³) for n rows (a table has
/// at most a few dozen tracks).
pub fn assign(cost: &[[f32; NUMBERS]], null_cost: &[f32]) -> Vec<Option<u8>> {
    let n = cost.len();
    if n == 0 {
        return Vec::new();
    }
    // Columns: the 16 numbers, then one "no number" column per row (only its own row may
    // use it cheaply).
    let m = NUMBERS + n;
    const BIG: f64 = 1e9;
    let c = |i: usize, j: usize| -> f64 {
        if j < NUMBERS {
            cost[i][j] as f64
        } else if j - NUMBERS == i {
            null_cost[i] as f64
        } else {
            BIG
        }
    };
    // e-maxx formulation, 1-based; rows n <= columns m.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let cur = c(i0 - 1, j - 1) - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![None; n];
    for j in 1..=m {
        if p[j] != 0 && j - 1 < NUMBERS {
            out[p[j] - 1] = Some((j - 1) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features_of(bgr: [f32; 3], value: f32) -> KindFeatures {
        let [b, g, r] = bgr;
        let mx = b.max(g).max(r);
        KindFeatures {
            colour: 0.6,
            hue: [(r - 0.5 * (g + b)) / mx, 0.866_025_4 * (g - b) / mx],
            value,
            n: 200,
            ..KindFeatures::default()
        }
    }

    fn best(p: &[f32; NUMBERS]) -> usize {
        (0..NUMBERS).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()
    }

    #[test]
    fn colour_and_pattern_give_the_number() {
        let orange = features_of([10.0, 106.0, 248.0], 1.5);
        assert_eq!(best(&evidence(BallKind::Solid, &orange, None)), 5);
        assert_eq!(best(&evidence(BallKind::Stripe, &orange, None)), 13);
        let green = features_of([62.0, 118.0, 8.0], 0.9);
        assert_eq!(best(&evidence(BallKind::Solid, &green, None)), 6);
        // Red and maroon share a hue: brightness decides.
        let red = features_of([34.0, 30.0, 206.0], 1.5);
        let maroon = features_of([34.0, 26.0, 124.0], 0.8);
        assert_eq!(best(&evidence(BallKind::Solid, &red, None)), 3);
        assert_eq!(best(&evidence(BallKind::Solid, &maroon, None)), 7);
        assert_eq!(best(&evidence(BallKind::Stripe, &maroon, None)), 15);
        // With a white reference, brightness relative to it decides, whatever the cloth.
        let cue = KindFeatures {
            white: 0.9,
            white_value: 2.0,
            ..KindFeatures::default()
        };
        let white = white_reference([cue, red, maroon].into_iter());
        assert_eq!(white, Some(2.0));
        let bright_red = features_of([34.0, 30.0, 206.0], 1.75);
        let bright_maroon = features_of([34.0, 26.0, 124.0], 1.05);
        assert_eq!(best(&evidence(BallKind::Solid, &bright_red, white)), 3);
        assert_eq!(best(&evidence(BallKind::Solid, &bright_maroon, white)), 7);
        assert_eq!(
            best(&evidence(BallKind::Cue, &KindFeatures::default(), None)),
            0
        );
        assert_eq!(
            best(&evidence(BallKind::Eight, &KindFeatures::default(), None)),
            8
        );
        let p = evidence(BallKind::Unknown, &KindFeatures::default(), None);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn assignment_is_one_to_one_and_may_say_none() {
        // Two tracks both prefer 3; the second likes 11 nearly as much, the first nothing else.
        let mut a = [9.0f32; NUMBERS];
        a[3] = 0.1;
        let mut b = [9.0f32; NUMBERS];
        b[3] = 0.2;
        b[11] = 0.3;
        // A third track is unsure of everything: no number beats its null cost.
        let c = [2.0f32; NUMBERS];
        let out = assign(&[a, b, c], &[1.0, 1.0, 1.0]);
        assert_eq!(out, vec![Some(3), Some(11), None]);
        // Many tracks wanting the same number: it goes to one of them only.
        let rows = vec![a; 5];
        let out = assign(&rows, &[1.0; 5]);
        assert_eq!(out.iter().filter(|n| **n == Some(3)).count(), 1);
        assert_eq!(out.iter().filter(|n| n.is_none()).count(), 4);
        assert!(assign(&[], &[]).is_empty());
    }
}
