//! Table detection: the dominant cloth colour, the cloth region and its four corners.
//!
//! The cloth colour is the mode of a chromaticity histogram (b, g, r divided by their sum) of
//! the frame's centre: chromaticity does not change with the strength of the light, so lamp
//! pools, gradients and dim frames do not matter, and any cloth colour works. The cloth region
//! is the largest connected area of that chromaticity; its convex hull bridges the bites of
//! the balls and pockets; the four longest sides of the simplified hull, intersected, give the
//! corners (pocket cuts at the corners are short sides and drop out), which tolerates
//! perspective.

use opencv::core::{self, Mat, Point, Point2f, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::geom::{order_corners, pixel, polygon_area, sample, Line, P2};
use super::DetectError;

/// The cloth colour: a chromaticity and a tolerance around it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClothRef {
    /// Chromaticity (b, g, r) / (b + g + r).
    pub chroma: [f32; 3],
    /// Largest chromaticity distance still counted as cloth.
    pub tol: f32,
    /// Median b + g + r of the cloth near the frame centre.
    pub intensity: f32,
}

impl ClothRef {
    /// Whether a pixel has the cloth's chromaticity (brightness bounds are the caller's).
    #[inline]
    pub fn chroma_dist2(&self, b: f32, g: f32, r: f32) -> f32 {
        let s = b + g + r;
        let inv = 1.0 / s.max(1.0);
        let (cb, cg, cr) = (b * inv, g * inv, r * inv);
        (cb - self.chroma[0]).powi(2)
            + (cg - self.chroma[1]).powi(2)
            + (cr - self.chroma[2]).powi(2)
    }
}

/// The detected table, in working-image coordinates.
#[derive(Debug, Clone)]
pub(crate) struct TableModel {
    /// Corners of the playing surface (the cushion noses), clockwise from top-left.
    pub playing: [P2; 4],
    /// Convex hull of the cloth region, clockwise.
    pub hull: Vec<P2>,
    /// The cloth colour.
    pub cloth: ClothRef,
    /// Mean length of the two long sides.
    pub long_side: f32,
    /// Bounding box of the hull (x, y, w, h), clipped to the image.
    pub roi: (usize, usize, usize, usize),
    /// `roi` sized: 1 inside the hull grown by a third of a ball radius, else 0.
    pub mask: Vec<u8>,
}

/// Reusable buffers of table detection.
#[derive(Default)]
pub(crate) struct TableBuffers {
    cloth: Vec<u8>,
    closed: Mat,
    opened: Mat,
    labels: Mat,
    stats: Mat,
    centroids: Mat,
    component: Vec<u8>,
    grad: Vec<u16>,
    cut: Vec<u8>,
}

/// Estimates the cloth colour from the centre half of a BGR image.
pub(crate) fn cloth_reference(img: &[u8], w: usize, h: usize) -> Option<ClothRef> {
    const BINS: usize = 48;
    let mut hist = vec![0u32; BINS * BINS];
    let (x0, x1, y0, y1) = (w / 4, 3 * w / 4, h / 4, 3 * h / 4);
    let bin = |v: f32| ((v * BINS as f32) as usize).min(BINS - 1);
    for y in y0..y1 {
        let row = &img[y * w * 3..(y + 1) * w * 3];
        for x in x0..x1 {
            let [b, g, r] = pixel(row, x);
            let s = b + g + r;
            if s < 45.0 {
                continue;
            }
            hist[bin(b / s) * BINS + bin(g / s)] += 1;
        }
    }
    // Mode of the 3x3-smoothed histogram.
    let mut best = (0u32, 0usize, 0usize);
    for i in 0..BINS {
        for j in 0..BINS {
            let mut s = 0;
            for di in i.saturating_sub(1)..=(i + 1).min(BINS - 1) {
                for dj in j.saturating_sub(1)..=(j + 1).min(BINS - 1) {
                    s += hist[di * BINS + dj];
                }
            }
            if s > best.0 {
                best = (s, i, j);
            }
        }
    }
    if best.0 == 0 {
        return None;
    }
    let mode = [
        (best.1 as f32 + 0.5) / BINS as f32,
        (best.2 as f32 + 0.5) / BINS as f32,
    ];
    // Mean chromaticity near the mode, then the spread of the distances around it.
    let mut acc = [0.0f64; 3];
    let mut n = 0usize;
    let near = 1.6 / BINS as f32;
    let mut dists = Vec::with_capacity((x1 - x0) * (y1 - y0) / 4);
    for pass in 0..2 {
        let c_ref = if pass == 0 {
            [0.0; 3]
        } else {
            let m = [acc[0] / n as f64, acc[1] / n as f64, acc[2] / n as f64];
            [m[0] as f32, m[1] as f32, m[2] as f32]
        };
        for y in (y0..y1).step_by(2) {
            let row = &img[y * w * 3..(y + 1) * w * 3];
            for x in (x0..x1).step_by(2) {
                let [b, g, r] = pixel(row, x);
                let s = b + g + r;
                if s < 45.0 {
                    continue;
                }
                let (cb, cg, cr) = (b / s, g / s, r / s);
                if pass == 0 {
                    if (cb - mode[0]).abs() < near && (cg - mode[1]).abs() < near {
                        acc[0] += cb as f64;
                        acc[1] += cg as f64;
                        acc[2] += cr as f64;
                        n += 1;
                    }
                } else {
                    let d = ((cb - c_ref[0]).powi(2)
                        + (cg - c_ref[1]).powi(2)
                        + (cr - c_ref[2]).powi(2))
                    .sqrt();
                    if d < 0.15 {
                        dists.push((d, s));
                    }
                }
            }
        }
        if n == 0 {
            return None;
        }
    }
    let chroma = [
        (acc[0] / n as f64) as f32,
        (acc[1] / n as f64) as f32,
        (acc[2] / n as f64) as f32,
    ];
    if dists.len() < 16 {
        return None;
    }
    dists.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The inner half of the distances is cloth noise; the tolerance sits well outside it.
    let med = dists[dists.len() / 4].0;
    // The lower quarter of the distances is cloth noise (0.76 sigma of a 2-D Gaussian); the
    // tolerance sits at about four sigma.
    let tol = (5.5 * med + 0.008).clamp(0.02, 0.12);
    let mut sums: Vec<f32> = dists.iter().filter(|d| d.0 < tol).map(|d| d.1).collect();
    if sums.is_empty() {
        return None;
    }
    let mid = sums.len() / 2;
    let intensity = *sums.select_nth_unstable_by(mid, f32::total_cmp).1;
    Some(ClothRef {
        chroma,
        tol,
        intensity,
    })
}

/// Finds the table in `small` (a BGR image `k` times smaller than the working image of size
/// `work_w` x `work_h`); every coordinate of the result is in working-image pixels.
#[allow(clippy::too_many_arguments)]
pub(crate) fn detect_table(
    small: &[u8],
    sw: usize,
    sh: usize,
    k: f32,
    work: &[u8],
    work_w: usize,
    work_h: usize,
    edge_blur: f32,
    bufs: &mut TableBuffers,
) -> Result<Option<TableModel>, DetectError> {
    let Some(cloth) = cloth_reference(small, sw, sh) else {
        return Ok(None);
    };
    let tol2 = cloth.tol * cloth.tol;
    let (lo, hi) = (0.2 * cloth.intensity, 3.5 * cloth.intensity);
    bufs.cloth.clear();
    bufs.cloth.resize(sw * sh, 0);
    for (px, m) in small.chunks_exact(3).zip(bufs.cloth.iter_mut()) {
        let (b, g, r) = (px[0] as f32, px[1] as f32, px[2] as f32);
        let s = b + g + r;
        if s >= lo.max(30.0) && s <= hi && cloth.chroma_dist2(b, g, r) < tol2 {
            *m = 255;
        }
    }
    let k5 = imgproc::get_structuring_element(
        imgproc::MORPH_ELLIPSE,
        Size::new(5, 5),
        Point::new(-1, -1),
    )?;
    let k3 =
        imgproc::get_structuring_element(imgproc::MORPH_RECT, Size::new(3, 3), Point::new(-1, -1))?;
    let bv = imgproc::morphology_default_border_value()?;
    {
        let src = Mat::new_rows_cols_with_data::<u8>(sh as i32, sw as i32, &bufs.cloth)?;
        imgproc::morphology_ex(
            &src,
            &mut bufs.closed,
            imgproc::MORPH_CLOSE,
            &k5,
            Point::new(-1, -1),
            1,
            core::BORDER_CONSTANT,
            bv,
        )?;
    }
    // Edges cut the cloth region: with a grey or nearly black cloth, rails and floor can have
    // its colour, but the cushion and the rail still meet it along a step. Smooth lighting
    // and the cloth's noise stay below the threshold. When the region still runs into the
    // frame's edges on three sides (two in a lifted dim frame, see `leak_sides`: it leaked
    // into a floor of the cloth's colour), the threshold is lowered until the rails' fainter
    // edges hold it.
    let noise = pixel_noise(small, sw, sh, &cloth);
    bufs.grad.clear();
    bufs.grad.resize(sw * sh, 0);
    for y in 1..sh - 1 {
        for x in 1..sw - 1 {
            let o = (y * sw + x) * 3;
            let mut g = 0i32;
            for c in 0..3 {
                let dx = small[o + 3 + c] as i32 - small[o - 3 + c] as i32;
                let dy = small[o + 3 * sw + c] as i32 - small[o - 3 * sw + c] as i32;
                g = g.max(dx.abs() + dy.abs());
            }
            bufs.grad[y * sw + x] = g as u16;
        }
    }
    let g_floor = 8.0 * noise + 3.0;
    let mut g_thr = g_floor + 0.25 * cloth.intensity / 3.0 + 3.0;
    let mut best = (0i32, 0i32);
    for attempt in 0..3 {
        bufs.cut.clear();
        bufs.cut.extend_from_slice(bufs.closed.data_bytes()?);
        for (m, &g) in bufs.cut.iter_mut().zip(bufs.grad.iter()) {
            if g as f32 > g_thr {
                *m = 0;
            }
        }
        {
            let cut = Mat::new_rows_cols_with_data::<u8>(sh as i32, sw as i32, &bufs.cut)?;
            imgproc::morphology_ex(
                &cut,
                &mut bufs.opened,
                imgproc::MORPH_OPEN,
                &k3,
                Point::new(-1, -1),
                1,
                core::BORDER_CONSTANT,
                bv,
            )?;
        }
        let n = imgproc::connected_components_with_stats(
            &bufs.opened,
            &mut bufs.labels,
            &mut bufs.stats,
            &mut bufs.centroids,
            4,
            core::CV_32S,
        )?;
        // The table is the region that covers most of the frame's centre.
        let labels = bufs.labels.data_typed::<i32>()?;
        let mut central = vec![0u32; n as usize];
        for y in sh / 4..3 * sh / 4 {
            for x in sw / 4..3 * sw / 4 {
                central[labels[y * sw + x] as usize] += 1;
            }
        }
        let label = (1..n as usize).max_by_key(|&l| central[l]).unwrap_or(0) as i32;
        if label == 0 || central[label as usize] == 0 {
            best = (0, 0);
            break;
        }
        best = (
            label,
            *bufs.stats.at_2d::<i32>(label, imgproc::CC_STAT_AREA)?,
        );
        let sides = frame_sides(&bufs.stats, label, sw, sh)?;
        tracing::trace!(attempt, noise, g_thr, ?sides, ?cloth, "table region");
        if sides.iter().filter(|&&b| b).count() < leak_sides(edge_blur) || g_thr <= g_floor {
            break;
        }
        g_thr = (0.5 * g_thr).max(g_floor);
    }
    if best.0 == 0 || (best.1 as f32) < 0.1 * (sw * sh) as f32 {
        return Ok(None);
    }
    let labels = bufs.labels.data_typed::<i32>()?;
    bufs.component.clear();
    bufs.component
        .extend(labels.iter().map(|&l| if l == best.0 { 255u8 } else { 0 }));
    // A cue, a hand or an arm lying across the cloth cuts it into pieces: each piece that
    // lies within a few pixels of the main one (across the thin occluder, never across a
    // rail, which is wider) belongs to the same cloth.
    let n = n_labels(&bufs.stats)?;
    let merged = merge_split_cloth(bufs, sw, sh, best.0, n)?;
    let comp = Mat::new_rows_cols_with_data::<u8>(sh as i32, sw as i32, &bufs.component)?;
    let mut contours: Vector<Vector<Point>> = Vector::new();
    imgproc::find_contours(
        &comp,
        &mut contours,
        imgproc::RETR_EXTERNAL,
        imgproc::CHAIN_APPROX_NONE,
        Point::new(0, 0),
    )?;
    let contour: Vector<Point> = if merged {
        // The pieces' outlines together: the hull bridges the occluder.
        contours.iter().flat_map(|c| c.to_vec()).collect()
    } else {
        match contours.iter().max_by_key(|c| c.len()) {
            Some(c) => c,
            None => return Ok(None),
        }
    };
    if contour.len() < 4 {
        return Ok(None);
    }
    let mut hull_pts: Vector<Point> = Vector::new();
    imgproc::convex_hull(&contour, &mut hull_pts, false, true)?;
    // To working-image coordinates (pixel centres scale about the half-pixel offset).
    let to_work = |p: Point| -> P2 { [(p.x as f32 + 0.5) * k - 0.5, (p.y as f32 + 0.5) * k - 0.5] };
    let mut hull: Vec<P2> = hull_pts.iter().map(to_work).collect();
    if hull.len() < 4 {
        return Ok(None);
    }
    if polygon_area(&hull) < 0.0 {
        hull.reverse();
    }
    // The mask pixels are cloth pixel centres; the cloth reaches half a small pixel further.
    let (cx, cy) = centroid(&hull);
    for p in hull.iter_mut() {
        let (dx, dy) = (p[0] - cx, p[1] - cy);
        let d = (dx * dx + dy * dy).sqrt().max(1e-3);
        p[0] += dx / d * 0.5 * k;
        p[1] += dy / d * 0.5 * k;
    }
    let outline: Vec<P2> = contour.iter().map(to_work).collect();
    // The rough quadrilateral of the hull, refined on the outline when its sides are straight
    // enough to fit.
    let Some(corners) =
        quad_from_hull(&hull)?.map(|q| refine_quad(q, &outline, 0.5 * k).unwrap_or(q))
    else {
        return Ok(None);
    };
    let hull_area = polygon_area(&hull);
    let quad_area = polygon_area(&corners);
    if !(0.9 * hull_area..=1.4 * hull_area).contains(&quad_area) {
        return Ok(None);
    }
    // The cloth region may include the cushions; the playing surface ends at their noses.
    let playing = nose_corners(work, work_w, work_h, &corners, 2.0 * noise, edge_blur);
    build_model(playing, hull, &corners, cloth, work_w, work_h)
}

/// The table model of a playing area fixed by the configuration (`playing`, working-image
/// pixels, any order), with the cloth colour measured on `small` (a BGR image of size `sw` x
/// `sh`).
pub(crate) fn model_from_corners(
    playing: [P2; 4],
    small: &[u8],
    sw: usize,
    sh: usize,
    work_w: usize,
    work_h: usize,
) -> Result<Option<TableModel>, DetectError> {
    let Some(cloth) = cloth_reference(small, sw, sh) else {
        return Ok(None);
    };
    let playing = order_corners(playing);
    if polygon_area(&playing) <= 0.0 {
        return Ok(None);
    }
    // Half a pixel out: the playing corners are the cushion noses, pixel centres inside.
    let hull = grow_convex(&playing, 0.5);
    build_model(playing, hull, &playing, cloth, work_w, work_h)
}

/// The rest of the model from the playing area, the cloth hull and the cloth quadrilateral.
fn build_model(
    playing: [P2; 4],
    hull: Vec<P2>,
    corners: &[P2; 4],
    cloth: ClothRef,
    work_w: usize,
    work_h: usize,
) -> Result<Option<TableModel>, DetectError> {
    let side = |i: usize| {
        let (p, q) = (corners[i], corners[(i + 1) % 4]);
        ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
    };
    let (s0, s1) = ((side(0) + side(2)) / 2.0, (side(1) + side(3)) / 2.0);
    let long_side = s0.max(s1);

    // Search mask: the hull grown by a third of a ball radius, inside the image: a ball frozen
    // to a cushion reaches the cloth's edge, which the hull follows only to a pixel or two.
    let margin = (0.35 * long_side / 80.0).max(1.0);
    let minx = hull.iter().map(|p| p[0]).fold(f32::INFINITY, f32::min);
    let maxx = hull.iter().map(|p| p[0]).fold(f32::NEG_INFINITY, f32::max);
    let miny = hull.iter().map(|p| p[1]).fold(f32::INFINITY, f32::min);
    let maxy = hull.iter().map(|p| p[1]).fold(f32::NEG_INFINITY, f32::max);
    let x0 = (minx - margin - 1.0).floor().max(0.0) as usize;
    let y0 = (miny - margin - 1.0).floor().max(0.0) as usize;
    let x1 = ((maxx + margin + 1.0).ceil().max(0.0) as usize).min(work_w - 1);
    let y1 = ((maxy + margin + 1.0).ceil().max(0.0) as usize).min(work_h - 1);
    if x1 <= x0 + 8 || y1 <= y0 + 8 {
        return Ok(None);
    }
    let (rw, rh) = (x1 - x0 + 1, y1 - y0 + 1);
    // The hull grown by `margin`: every side moved out, neighbours intersected (convex).
    let grown = grow_convex(&hull, margin);
    let pts: Vector<Point> = grown
        .iter()
        .map(|p| {
            Point::new(
                ((p[0] - x0 as f32) * 16.0).round() as i32,
                ((p[1] - y0 as f32) * 16.0).round() as i32,
            )
        })
        .collect();
    let mut mask_mat = Mat::new_rows_cols_with_default(
        rh as i32,
        rw as i32,
        core::CV_8UC1,
        core::Scalar::all(0.0),
    )?;
    imgproc::fill_convex_poly(
        &mut mask_mat,
        &pts,
        core::Scalar::all(1.0),
        imgproc::LINE_8,
        4,
    )?;
    let mask = mask_mat.data_bytes()?.to_vec();
    Ok(Some(TableModel {
        playing,
        hull,
        cloth,
        long_side,
        roi: (x0, y0, rw, rh),
        mask,
    }))
}

/// How many frame sides the cloth region may reach before the edge threshold is lowered to
/// hold it at the rails. A lifted dim frame (smoothed by `edge_blur` > 0) gives floor and rail
/// colours only a little way from the cloth's, so running out of the frame on two sides is
/// already a leak there (no table of these scenes fills two sides of the view); a normally
/// exposed frame keeps the rule of three sides.
fn leak_sides(edge_blur: f32) -> usize {
    if edge_blur > 0.0 {
        2
    } else {
        3
    }
}

/// The frame sides (left, top, right, bottom) that component `label` of a
/// `connected_components_with_stats` result reaches in an `sw` x `sh` image.
fn frame_sides(stats: &Mat, label: i32, sw: usize, sh: usize) -> Result<[bool; 4], DetectError> {
    let st = |k: i32| stats.at_2d::<i32>(label, k).copied();
    let (left, top, w, h) = (
        st(imgproc::CC_STAT_LEFT)?,
        st(imgproc::CC_STAT_TOP)?,
        st(imgproc::CC_STAT_WIDTH)?,
        st(imgproc::CC_STAT_HEIGHT)?,
    );
    Ok([
        left <= 1,
        top <= 1,
        left + w >= sw as i32 - 1,
        top + h >= sh as i32 - 1,
    ])
}

/// Number of labels in a `connected_components_with_stats` result.
fn n_labels(stats: &Mat) -> Result<i32, DetectError> {
    Ok(stats.rows())
}

/// Adds to `bufs.component` (the main cloth piece, label `main`) every other sizeable piece of
/// `bufs.labels` that comes within a few pixels of it: cloth cut by a thin occluder. Returns
/// whether any piece was added.
fn merge_split_cloth(
    bufs: &mut TableBuffers,
    sw: usize,
    sh: usize,
    main: i32,
    n: i32,
) -> Result<bool, DetectError> {
    let min_area = (0.002 * (sw * sh) as f32) as i32;
    // A piece of bed is thick; a strip of cushion cut off by the nose's edge is not (it is
    // left to the nose search).
    let min_thickness = 0.05 * sw.min(sh) as f32;
    let stat = |l: i32, k: i32| bufs.stats.at_2d::<i32>(l, k).copied().unwrap_or(0);
    let reaches = |l: i32| frame_sides(&bufs.stats, l, sw, sh).unwrap_or_default();
    let main_reaches = reaches(main);
    let candidates: Vec<i32> = (1..n)
        .filter(|&l| l != main)
        // A piece of the bed lies between the rails: one that runs out of the frame where the
        // main piece does not is floor of the cloth's colour beyond a rail.
        .filter(|&l| {
            reaches(l)
                .iter()
                .zip(main_reaches.iter())
                .all(|(&piece, &main)| !piece || main)
        })
        .filter(|&l| {
            let area = stat(l, imgproc::CC_STAT_AREA);
            let long = stat(l, imgproc::CC_STAT_WIDTH).max(stat(l, imgproc::CC_STAT_HEIGHT));
            area >= min_area && area as f32 >= min_thickness * long.max(1) as f32
        })
        .collect();
    if candidates.is_empty() {
        return Ok(false);
    }
    // A cue is 2-6 small pixels wide with its cut edges and shadow; a rail is twice that.
    let k = imgproc::get_structuring_element(
        imgproc::MORPH_ELLIPSE,
        Size::new(13, 13),
        Point::new(-1, -1),
    )?;
    let mut grown = Mat::default();
    {
        let comp = Mat::new_rows_cols_with_data::<u8>(sh as i32, sw as i32, &bufs.component)?;
        imgproc::dilate(
            &comp,
            &mut grown,
            &k,
            Point::new(-1, -1),
            1,
            core::BORDER_CONSTANT,
            imgproc::morphology_default_border_value()?,
        )?;
    }
    let grown = grown.data_bytes()?;
    let labels = bufs.labels.data_typed::<i32>()?;
    let mut touching = vec![0u32; n as usize];
    for (&l, &g) in labels.iter().zip(grown.iter()) {
        if g != 0 && l > 0 && l != main {
            touching[l as usize] += 1;
        }
    }
    // Touching along a stretch, not at a point: the cut runs along the occluder.
    let reach = (sw.min(sh) / 40).max(6) as u32;
    let joined: Vec<i32> = candidates
        .into_iter()
        .filter(|&l| touching[l as usize] >= reach)
        .collect();
    if joined.is_empty() {
        return Ok(false);
    }
    for (c, &l) in bufs.component.iter_mut().zip(labels.iter()) {
        if joined.contains(&l) {
            *c = 255;
        }
    }
    Ok(true)
}

/// Per-channel noise of the cloth near the frame centre: from differences of horizontally
/// adjacent cloth pixels (median absolute difference of a Gaussian pair is 0.954 sigma).
fn pixel_noise(img: &[u8], w: usize, h: usize, cloth: &ClothRef) -> f32 {
    let tol2 = cloth.tol * cloth.tol;
    let mut diffs = Vec::with_capacity(4096);
    for y in (h / 4..3 * h / 4).step_by(2) {
        let row = &img[y * w * 3..(y + 1) * w * 3];
        for x in (w / 4..3 * w / 4 - 1).step_by(2) {
            let p = &row[3 * x..3 * x + 6];
            let cloth_like =
                |q: &[u8]| cloth.chroma_dist2(q[0] as f32, q[1] as f32, q[2] as f32) < tol2;
            if cloth_like(&p[0..3]) && cloth_like(&p[3..6]) {
                diffs.push((p[1] as f32 - p[4] as f32).abs());
            }
        }
    }
    if diffs.is_empty() {
        return 2.0;
    }
    let mid = diffs.len() / 2;
    *diffs.select_nth_unstable_by(mid, f32::total_cmp).1 / 0.954
}

/// The convex polygon `poly` (clockwise) with every side moved outwards by `d` (inwards when
/// negative).
pub(crate) fn grow_convex(poly: &[P2], d: f32) -> Vec<P2> {
    let n = poly.len();
    let lines: Vec<Option<Line>> = (0..n)
        .map(|i| {
            let mut l = Line::through(poly[i], poly[(i + 1) % n])?;
            // Outwards is where the interior distance is negative (see convex_inside_dist).
            let probe = [poly[i][0] + 1e-3, poly[i][1]];
            let _ = probe;
            let c = centroid(poly);
            if l.dist([c.0, c.1]) > 0.0 {
                l = Line {
                    a: -l.a,
                    b: -l.b,
                    c: -l.c,
                };
            }
            l.c += d;
            Some(l)
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        match (lines[(i + n - 1) % n], lines[i]) {
            (Some(a), Some(b)) => match a.intersect(&b) {
                // Nearly collinear neighbours: push the vertex straight out instead.
                Some(p)
                    if (p[0] - poly[i][0]).abs() + (p[1] - poly[i][1]).abs() < 4.0 * d + 4.0 =>
                {
                    out.push(p)
                }
                _ => out.push([poly[i][0] + b.a * d, poly[i][1] + b.b * d]),
            },
            _ => out.push(poly[i]),
        }
    }
    out
}

fn centroid(poly: &[P2]) -> (f32, f32) {
    let n = poly.len() as f32;
    (
        poly.iter().map(|p| p[0]).sum::<f32>() / n,
        poly.iter().map(|p| p[1]).sum::<f32>() / n,
    )
}

/// Refines the sides of a rough quadrilateral by robust line fits through the outline points
/// near each side (its middle 80%: the ends are pocket cuts), narrowing the band each round;
/// a ball or pocket biting into the cloth is too far from the line to count. `grow` moves
/// each side outwards (the outline runs through the outermost cloth pixel centres).
fn refine_quad(mut q: [P2; 4], outline: &[P2], grow: f32) -> Option<[P2; 4]> {
    let side_len = |q: &[P2; 4], i: usize| {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
    };
    let short = (0..4)
        .map(|i| side_len(&q, i))
        .fold(f32::INFINITY, f32::min);
    for band in [0.06f32, 0.03, 0.015] {
        let band = (band * short).max(1.5);
        let mut lines = [None; 4];
        for (i, slot) in lines.iter_mut().enumerate() {
            let (a, b) = (q[i], q[(i + 1) % 4]);
            let len = side_len(&q, i).max(1.0);
            let (ux, uy) = ((b[0] - a[0]) / len, (b[1] - a[1]) / len);
            let pts: Vec<P2> = outline
                .iter()
                .copied()
                .filter(|p| {
                    let (dx, dy) = (p[0] - a[0], p[1] - a[1]);
                    let t = (dx * ux + dy * uy) / len;
                    let d = dx * uy - dy * ux;
                    (0.1..=0.9).contains(&t) && d.abs() <= band
                })
                .collect();
            if (pts.len() as f32) < 0.15 * len {
                return None;
            }
            *slot = fit_line_robust(&pts);
        }
        let mut next = [[0.0f32; 2]; 4];
        for i in 0..4 {
            let (l0, l1) = (lines[(i + 3) % 4]?, lines[i]?);
            next[i] = l0.intersect(&l1)?;
        }
        q = next;
    }
    // Push every side out by `grow` along its outward normal.
    let c = [
        q.iter().map(|p| p[0]).sum::<f32>() / 4.0,
        q.iter().map(|p| p[1]).sum::<f32>() / 4.0,
    ];
    let mut lines = [None; 4];
    for (i, slot) in lines.iter_mut().enumerate() {
        let mut l = Line::through(q[i], q[(i + 1) % 4])?;
        if l.dist(c) > 0.0 {
            l = Line {
                a: -l.a,
                b: -l.b,
                c: -l.c,
            };
        }
        l.c += grow;
        *slot = Some(l);
    }
    let mut out = [[0.0f32; 2]; 4];
    for i in 0..4 {
        out[i] = lines[(i + 3) % 4]?.intersect(&lines[i]?)?;
    }
    let out = order_corners(out);
    (polygon_area(&out) > 0.0).then_some(out)
}

/// Moves each side of the cloth region's quadrilateral inwards to the cushion's nose when
/// there is one: the strongest brightness step parallel to the side within a tenth of the
/// table's width, in the median profile of many cuts across the side (balls and pockets on a
/// few cuts do not move a median). A side with no clear step (the region already ends at the
/// nose) stays.
///
/// `blur` is the sigma (pixels) of a smoothing `work` went through: the step is then measured
/// across that much more, as a smoothed edge is spread over it.
fn nose_corners(work: &[u8], w: usize, h: usize, q: &[P2; 4], noise: f32, blur: f32) -> [P2; 4] {
    let side_len = |i: usize| {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
    };
    let short = (0..4).map(side_len).fold(f32::INFINITY, f32::min);
    let reach = 0.1 * short;
    let step = 0.5f32;
    let n_k = ((reach / step) as usize).clamp(4, 128);
    let c = [
        q.iter().map(|p| p[0]).sum::<f32>() / 4.0,
        q.iter().map(|p| p[1]).sum::<f32>() / 4.0,
    ];
    let mut lines = [None; 4];
    for (i, slot) in lines.iter_mut().enumerate() {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        let Some(mut line) = Line::through(a, b) else {
            continue;
        };
        // Inward normal: towards the centre.
        let (mut nx, mut ny) = (line.a, line.b);
        if line.dist(c) < 0.0 {
            nx = -nx;
            ny = -ny;
        }
        let mut profiles: Vec<Vec<f32>> = Vec::with_capacity(32);
        for j in 0..32 {
            let t = 0.1 + 0.8 * (j as f32 + 0.5) / 32.0;
            if (0.42..0.58).contains(&t) {
                continue; // a side pocket
            }
            let (px, py) = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]));
            let prof: Vec<f32> = (0..n_k)
                .map(|kk| {
                    let d = kk as f32 * step;
                    let v = sample(work, w, h, px + d * nx, py + d * ny);
                    v[0] + v[1] + v[2]
                })
                .collect();
            profiles.push(prof);
        }
        if profiles.len() < 8 {
            continue;
        }
        let mut median = vec![0.0f32; n_k];
        let mut col = Vec::with_capacity(profiles.len());
        for (kk, m) in median.iter_mut().enumerate() {
            col.clear();
            col.extend(profiles.iter().map(|p| p[kk]));
            let mid = col.len() / 2;
            *m = *col.select_nth_unstable_by(mid, f32::total_cmp).1;
        }
        // Strongest step beyond the region's own edge (the first 1.5 px).
        let bed = median[n_k - 1].max(1.0);
        let hw = 1 + (blur / step).round() as usize;
        if n_k <= 2 * hw + 3 {
            continue;
        }
        let mut best = (0.0f32, 0usize);
        for kk in (2 + hw)..n_k - hw {
            let g = (median[kk + hw] - median[kk - hw]).abs();
            if g > best.0 {
                best = (g, kk);
            }
        }
        let (g, kk) = best;
        if g < (0.08 * bed).max(6.0 * noise) {
            continue;
        }
        // The bed beyond the step must be steady (not another edge: a ball row, a pocket).
        let tail = &median[(kk + 1 + hw).min(n_k - 1)..];
        let spread = tail.iter().fold(0.0f32, |m, v| m.max((v - bed).abs()));
        if spread > 0.5 * g {
            continue;
        }
        let d = kk as f32 * step;
        line.c += if line.a * nx + line.b * ny > 0.0 {
            d
        } else {
            -d
        };
        *slot = Some(line);
    }
    let mut out = *q;
    let all: Vec<Line> = (0..4)
        .map(|i| lines[i].or_else(|| Line::through(q[i], q[(i + 1) % 4])))
        .collect::<Option<Vec<Line>>>()
        .unwrap_or_default();
    if all.len() == 4 {
        for i in 0..4 {
            if let Some(p) = all[(i + 3) % 4].intersect(&all[i]) {
                out[i] = p;
            }
        }
    }
    let out = order_corners(out);
    if polygon_area(&out) > 0.5 * polygon_area(q) {
        out
    } else {
        *q
    }
}

/// Total-least-squares line through `pts` with Huber reweighting (1 px).
fn fit_line_robust(pts: &[P2]) -> Option<Line> {
    let mut w = vec![1.0f32; pts.len()];
    let mut line = None;
    for _ in 0..4 {
        let sw: f32 = w.iter().sum();
        if sw <= 0.0 {
            return None;
        }
        let mx = pts.iter().zip(&w).map(|(p, w)| p[0] * w).sum::<f32>() / sw;
        let my = pts.iter().zip(&w).map(|(p, w)| p[1] * w).sum::<f32>() / sw;
        let (mut sxx, mut sxy, mut syy) = (0.0f32, 0.0f32, 0.0f32);
        for (p, w) in pts.iter().zip(&w) {
            let (dx, dy) = (p[0] - mx, p[1] - my);
            sxx += w * dx * dx;
            sxy += w * dx * dy;
            syy += w * dy * dy;
        }
        // Direction of the largest spread.
        let theta = 0.5 * (2.0 * sxy).atan2(sxx - syy);
        let l = Line::through([mx, my], [mx + theta.cos(), my + theta.sin()])?;
        for (p, wi) in pts.iter().zip(w.iter_mut()) {
            let d = l.dist(*p).abs();
            *wi = if d <= 1.0 { 1.0 } else { 1.0 / d };
        }
        line = Some(l);
    }
    line
}

/// Four corners from a convex hull: simplify, merge nearly collinear edges, keep the four
/// longest sides and intersect neighbours.
fn quad_from_hull(hull: &[P2]) -> Result<Option<[P2; 4]>, DetectError> {
    let pts: Vector<Point2f> = hull.iter().map(|p| Point2f::new(p[0], p[1])).collect();
    let perimeter = imgproc::arc_length(&pts, true)?;
    let mut approx: Vector<Point2f> = Vector::new();
    imgproc::approx_poly_dp(&pts, &mut approx, 0.006 * perimeter, true)?;
    let poly: Vec<P2> = approx.iter().map(|p| [p.x, p.y]).collect();
    let n = poly.len();
    if n < 4 {
        return Ok(None);
    }
    // Groups of consecutive edges with nearly the same direction.
    let dir = |i: usize| {
        let (p, q) = (poly[i], poly[(i + 1) % n]);
        (q[1] - p[1]).atan2(q[0] - p[0])
    };
    let angle_diff = |a: f32, b: f32| {
        let d = (a - b).rem_euclid(std::f32::consts::TAU);
        d.min(std::f32::consts::TAU - d)
    };
    let max_turn = 10f32.to_radians();
    // Start at an edge that begins a group (a real turn before it).
    let start = (0..n)
        .find(|&i| angle_diff(dir((i + n - 1) % n), dir(i)) > max_turn)
        .unwrap_or(0);
    let mut groups: Vec<(usize, usize)> = Vec::new(); // (first vertex, last vertex) indices
    let mut g_start = start;
    let mut g_dir = dir(start);
    for s in 1..=n {
        let i = (start + s) % n;
        if s == n || angle_diff(dir(i), g_dir) > max_turn {
            groups.push((g_start, i));
            g_start = i;
            g_dir = dir(i);
        }
    }
    if groups.len() < 4 {
        return Ok(None);
    }
    let glen = |g: &(usize, usize)| {
        let (p, q) = (poly[g.0], poly[g.1]);
        ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
    };
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| glen(&groups[b]).total_cmp(&glen(&groups[a])));
    let mut chosen: Vec<usize> = order[..4].to_vec();
    chosen.sort_unstable();
    let mut lines = Vec::with_capacity(4);
    for &gi in &chosen {
        let (a, b) = groups[gi];
        let Some(l) = Line::through(poly[a], poly[b]) else {
            return Ok(None);
        };
        lines.push(l);
    }
    let mut corners = [[0.0f32; 2]; 4];
    for i in 0..4 {
        let Some(p) = lines[i].intersect(&lines[(i + 1) % 4]) else {
            return Ok(None);
        };
        corners[i] = p;
    }
    let corners = order_corners(corners);
    if polygon_area(&corners) <= 0.0 {
        return Ok(None);
    }
    Ok(Some(corners))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels `mask` (`w` x `h`) into `bufs` as `detect_table` does and makes the piece under
    /// `(cx, cy)` the main one; returns its label and the number of labels.
    fn label(
        bufs: &mut TableBuffers,
        mask: &[u8],
        w: usize,
        h: usize,
        c: (usize, usize),
    ) -> (i32, i32) {
        let m = Mat::new_rows_cols_with_data::<u8>(h as i32, w as i32, mask).unwrap();
        let n = imgproc::connected_components_with_stats(
            &m,
            &mut bufs.labels,
            &mut bufs.stats,
            &mut bufs.centroids,
            4,
            core::CV_32S,
        )
        .unwrap();
        let labels = bufs.labels.data_typed::<i32>().unwrap();
        let main = labels[c.1 * w + c.0];
        bufs.component = labels
            .iter()
            .map(|&l| if l == main { 255 } else { 0 })
            .collect();
        (main, n)
    }

    #[test]
    fn cloth_cut_by_a_cue_is_joined_but_floor_beyond_a_rail_is_not() {
        let (w, h) = (160usize, 100usize);
        let mut mask = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                // The bed, cut across by a cue three pixels wide; and a patch of floor of the
                // cloth's colour five pixels beyond its left side, running out of the frame.
                let bed = (30..130).contains(&x) && (20..80).contains(&y) && !(78..81).contains(&x);
                let floor = x < 25 && (30..70).contains(&y);
                if bed || floor {
                    mask[y * w + x] = 255;
                }
            }
        }
        let mut bufs = TableBuffers::default();
        let (main, n) = label(&mut bufs, &mask, w, h, (60, 50));
        assert_eq!(n, 4, "background, two halves of the bed and the floor");
        assert!(merge_split_cloth(&mut bufs, w, h, main, n).unwrap());
        let at = |x: usize, y: usize| bufs.component[y * w + x];
        assert_eq!(at(60, 50), 255, "the main half");
        assert_eq!(
            at(100, 50),
            255,
            "the half beyond the cue is the same cloth"
        );
        assert_eq!(at(10, 50), 0, "the floor beyond the rail is not the table");
    }

    #[test]
    fn a_table_running_out_of_the_frame_still_joins_its_pieces() {
        // The main piece itself runs out on the left; the piece beyond the cue does not.
        let (w, h) = (160usize, 100usize);
        let mut mask = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                let bed = x < 130 && (20..80).contains(&y) && !(78..81).contains(&x);
                if bed {
                    mask[y * w + x] = 255;
                }
            }
        }
        let mut bufs = TableBuffers::default();
        let (main, n) = label(&mut bufs, &mask, w, h, (40, 50));
        assert!(merge_split_cloth(&mut bufs, w, h, main, n).unwrap());
        assert_eq!(bufs.component[50 * w + 100], 255);
    }

    #[test]
    fn a_dim_frame_takes_two_frame_sides_for_a_leak() {
        assert_eq!(leak_sides(0.0), 3, "normally exposed frames are unchanged");
        assert_eq!(leak_sides(1.2), 2);
    }
}
