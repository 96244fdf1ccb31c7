//! Step 1: the local cloth colour model, and the noise of the cloth around it.
//!
//! The mean colour of cloth-chromaticity pixels per block, smoothed and hole-filled,
//! interpolated bilinearly: it follows lamp pools, gradients and vignetting, so a pixel is later
//! compared with the cloth right next to it.

use tracing::trace;

use super::{Image, Roi};
use crate::detect::geom::{dot3, median, pixel};
use crate::detect::table::TableModel;

/// Side of a block of the cloth model, in working pixels.
const BLOCK: usize = 8;

/// The local cloth colour, per block, over the table's region of interest.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClothModel {
    x0: usize,
    y0: usize,
    gw: usize,
    gh: usize,
    means: Vec<[f32; 3]>,
    /// Noise of the cloth colour (per channel standard deviation, 8-bit levels).
    pub noise: f32,
}

impl ClothModel {
    /// The cloth colour expected at working-image point `(x, y)`.
    pub fn at(&self, x: f32, y: f32) -> [f32; 3] {
        if self.means.is_empty() {
            return [0.0; 3];
        }
        let gx = ((x - self.x0 as f32) / BLOCK as f32 - 0.5).clamp(0.0, (self.gw - 1) as f32);
        let gy = ((y - self.y0 as f32) / BLOCK as f32 - 0.5).clamp(0.0, (self.gh - 1) as f32);
        let (ix, iy) = (gx as usize, gy as usize);
        let (fx, fy) = (gx - ix as f32, gy - iy as f32);
        let ix1 = (ix + 1).min(self.gw - 1);
        let iy1 = (iy + 1).min(self.gh - 1);
        let m = |i: usize, j: usize| self.means[j * self.gw + i];
        let mut out = [0.0; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let top = m(ix, iy)[c] * (1.0 - fx) + m(ix1, iy)[c] * fx;
            let bot = m(ix, iy1)[c] * (1.0 - fx) + m(ix1, iy1)[c] * fx;
            *o = top * (1.0 - fy) + bot * fy;
        }
        out
    }

    /// Fills `row` with the model interpolated along ROI row `y`, `rw` pixels wide: the
    /// per-pixel loops of the later steps read it instead of calling [`ClothModel::at`].
    pub(super) fn row(&self, y: usize, rw: usize, row: &mut Vec<[f32; 3]>) {
        row.clear();
        let gy = ((y as f32 + 0.5) / BLOCK as f32 - 0.5).clamp(0.0, (self.gh - 1) as f32);
        let iy = gy as usize;
        let fy = gy - iy as f32;
        let iy1 = (iy + 1).min(self.gh - 1);
        // The two grid rows blended once; then each pixel blends two neighbours of that.
        let (top, bot) = (
            &self.means[iy * self.gw..(iy + 1) * self.gw],
            &self.means[iy1 * self.gw..(iy1 + 1) * self.gw],
        );
        let mut v = [[0.0f32; 3]; 160];
        let gw = self.gw.min(v.len());
        for i in 0..gw {
            for c in 0..3 {
                v[i][c] = top[i][c] + (bot[i][c] - top[i][c]) * fy;
            }
        }
        let last = (gw - 1) as f32;
        for x in 0..rw {
            let gx = ((x as f32 + 0.5) * (1.0 / BLOCK as f32) - 0.5).clamp(0.0, last);
            let ix = gx as usize;
            let fx = gx - ix as f32;
            let ix1 = (ix + 1).min(gw - 1);
            let (a, b) = (v[ix], v[ix1]);
            row.push([
                a[0] + (b[0] - a[0]) * fx,
                a[1] + (b[1] - a[1]) * fx,
                a[2] + (b[2] - a[2]) * fx,
            ]);
        }
    }
}

/// Reusable buffers of the cloth step.
#[derive(Default)]
pub(super) struct ClothBuffers {
    /// ROI pixels of the cloth's chromaticity (the samples of the model).
    candidate: Vec<u8>,
    grid: Vec<[f32; 4]>,
    grid2: Vec<[f32; 4]>,
    /// One ROI row of the model (see [`ClothModel::row`]); the foreground step reuses it.
    pub row: Vec<[f32; 3]>,
    angles: Vec<f32>,
}

/// Builds the local cloth model over the table's region; also returns the fraction of the
/// table region that looked like cloth.
pub(super) fn build(
    img: Image<'_>,
    roi: Roi,
    table: &TableModel,
    bufs: &mut ClothBuffers,
) -> (ClothModel, f32) {
    let Roi { x0, y0, rw, rh } = roi;
    let gw = rw.div_ceil(BLOCK);
    let gh = rh.div_ceil(BLOCK);
    bufs.grid.clear();
    bufs.grid.resize(gw * gh, [0.0; 4]);
    bufs.candidate.clear();
    bufs.candidate.resize(rw * rh, 0);
    let cl = &table.cloth;
    let tol2 = (cl.tol * 1.2).powi(2);
    let lo = (0.15 * cl.intensity).max(24.0);
    let mut inside = 0usize;
    let mut cloth_px = 0usize;
    for y in 0..rh {
        let row = img.roi_row(roi, y);
        let mrow = &table.mask[y * rw..(y + 1) * rw];
        let crow = &mut bufs.candidate[y * rw..(y + 1) * rw];
        let grow = &mut bufs.grid[(y / BLOCK) * gw..(y / BLOCK + 1) * gw];
        for x in 0..rw {
            if mrow[x] == 0 {
                continue;
            }
            inside += 1;
            let [b, g, r] = pixel(row, x);
            if b + g + r < lo || cl.chroma_dist2(b, g, r) >= tol2 {
                continue;
            }
            cloth_px += 1;
            crow[x] = 1;
            let cell = &mut grow[x / BLOCK];
            cell[0] += b;
            cell[1] += g;
            cell[2] += r;
            cell[3] += 1.0;
        }
    }
    let cloth_fraction = if inside > 0 {
        cloth_px as f32 / inside as f32
    } else {
        0.0
    };
    // Normalised 3x3 box smoothing of the block sums, then fill empty blocks from neighbours.
    bufs.grid2.clear();
    bufs.grid2.resize(gw * gh, [0.0; 4]);
    for gy in 0..gh {
        for gx in 0..gw {
            let mut acc = [0.0f32; 4];
            for j in gy.saturating_sub(1)..=(gy + 1).min(gh - 1) {
                for i in gx.saturating_sub(1)..=(gx + 1).min(gw - 1) {
                    let c = bufs.grid[j * gw + i];
                    // The centre block counts double: the model stays local.
                    let k = if i == gx && j == gy { 2.0 } else { 1.0 };
                    for (a, v) in acc.iter_mut().zip(c.iter()) {
                        *a += k * v;
                    }
                }
            }
            bufs.grid2[gy * gw + gx] = acc;
        }
    }
    let min_count = (BLOCK * BLOCK) as f32 * 0.5;
    let mut means: Vec<Option<[f32; 3]>> = bufs
        .grid2
        .iter()
        .map(|c| (c[3] >= min_count).then(|| [c[0] / c[3], c[1] / c[3], c[2] / c[3]]))
        .collect();
    for _ in 0..(gw.max(gh)) {
        if means.iter().all(Option::is_some) {
            break;
        }
        let prev = means.clone();
        for gy in 0..gh {
            for gx in 0..gw {
                if prev[gy * gw + gx].is_some() {
                    continue;
                }
                let mut acc = [0.0f32; 3];
                let mut n = 0.0;
                for j in gy.saturating_sub(1)..=(gy + 1).min(gh - 1) {
                    for i in gx.saturating_sub(1)..=(gx + 1).min(gw - 1) {
                        if let Some(m) = prev[j * gw + i] {
                            for c in 0..3 {
                                acc[c] += m[c];
                            }
                            n += 1.0;
                        }
                    }
                }
                if n > 0.0 {
                    means[gy * gw + gx] = Some([acc[0] / n, acc[1] / n, acc[2] / n]);
                }
            }
        }
    }
    let fallback = {
        let c = cl.chroma;
        let s = cl.intensity;
        [c[0] * s, c[1] * s, c[2] * s]
    };
    let means: Vec<[f32; 3]> = means.into_iter().map(|m| m.unwrap_or(fallback)).collect();
    (
        ClothModel {
            x0,
            y0,
            gw,
            gh,
            means,
            noise: 0.0,
        },
        cloth_fraction,
    )
}

/// Measures the noise of the cloth around `model` on the pixels [`build`] sampled, stores it
/// in `model.noise`, and returns the squared sine of the largest colour-direction angle that
/// still counts as cloth.
pub(super) fn measure_noise(
    img: Image<'_>,
    roi: Roi,
    model: &mut ClothModel,
    cloth_fraction: f32,
    bufs: &mut ClothBuffers,
) -> f32 {
    let Roi { rw, rh, .. } = roi;
    // Noise of the cloth: the spread of the colour-direction angle on cloth pixels.
    bufs.angles.clear();
    let mut mags = Vec::with_capacity(1024);
    for y in (0..rh).step_by(3) {
        model.row(y, rw, &mut bufs.row);
        let row = img.roi_row(roi, y);
        for x in (0..rw).step_by(3) {
            if bufs.candidate[y * rw + x] == 0 {
                continue;
            }
            let p = pixel(row, x);
            let c = bufs.row[x];
            let cc = dot3(c, c);
            let pc = dot3(p, c);
            let s = pc / cc.max(1.0);
            let d = [p[0] - s * c[0], p[1] - s * c[1], p[2] - s * c[2]];
            let dn = dot3(d, d).sqrt();
            bufs.angles.push(dn / (s * cc.sqrt()).max(1.0));
            if mags.len() < 4096 {
                mags.push(dn);
            }
        }
    }
    let theta_med = median(&mut bufs.angles).unwrap_or(0.02);
    // Orthogonal residual of a 3-channel Gaussian lies in a 2-D plane: Rayleigh, median 1.18 s.
    model.noise = median(&mut mags).unwrap_or(2.0) / 1.18;
    let theta_t = (4.0 * theta_med / 1.18).max(0.07);
    trace!(
        theta_med,
        theta_t,
        noise = model.noise,
        cloth_fraction,
        "cloth model"
    );
    theta_t * theta_t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose blocks are all `colour`.
    fn flat(colour: [f32; 3], gw: usize, gh: usize) -> ClothModel {
        ClothModel {
            x0: 10,
            y0: 20,
            gw,
            gh,
            means: vec![colour; gw * gh],
            noise: 0.0,
        }
    }

    #[test]
    fn a_flat_model_is_flat_everywhere() {
        let m = flat([40.0, 120.0, 30.0], 4, 3);
        assert_eq!(m.at(0.0, 0.0), [40.0, 120.0, 30.0]);
        assert_eq!(m.at(1e6, -1e6), [40.0, 120.0, 30.0]);
        let mut row = Vec::new();
        m.row(5, 30, &mut row);
        assert_eq!(row.len(), 30);
        assert!(row.iter().all(|&c| c == [40.0, 120.0, 30.0]));
    }

    #[test]
    fn the_model_blends_neighbouring_blocks() {
        let mut m = flat([0.0; 3], 2, 1);
        m.means[1] = [80.0; 3];
        // Block centres are at x0 + 4 and x0 + 12; half-way between them is the mean.
        assert_eq!(m.at(10.0 + 8.0, 24.0), [40.0; 3]);
        assert_eq!(m.at(10.0 + 4.0, 24.0), [0.0; 3]);
        let mut row = Vec::new();
        m.row(0, 16, &mut row);
        assert_eq!(row[0], [0.0; 3]);
        assert_eq!(row[15], [80.0; 3]);
        assert!(row.windows(2).all(|p| p[0][0] <= p[1][0]), "{row:?}");
    }

    #[test]
    fn an_empty_model_answers_black() {
        assert_eq!(ClothModel::default().at(3.0, 4.0), [0.0; 3]);
    }
}
