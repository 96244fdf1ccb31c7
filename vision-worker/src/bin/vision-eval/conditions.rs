//! `vision-eval --condition NAME|all`: the detector under each condition of real play (see
//! `video_worker::synthetic::conditions`), one line per condition and renderer: recall,
//! precision, kind accuracy, table corner error (the table is found from scratch on every
//! frame, with the condition on it), and the cue's tip and angle errors.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use billiards_vision_worker::detect::Detector;
use billiards_vision_worker::eval::Score;
use billiards_vision_worker::model::FrameDetections;
use billiards_vision_worker::scene::{conditions as alt, render_alt, AltScene, Truth};
use opencv::core::Mat;
use opencv::prelude::*;
use video_worker::synthetic::conditions::{Condition, CueTruth};
use video_worker::synthetic::{Scene, SceneParams, SceneStyle};

use super::{bgr_mat, official_truth, thread_cpu_ms, Args};

/// Tip within this many pixels and angle within [`ANGLE_OK`] degrees: good enough to draw an
/// aim line (the goal).
const TIP_OK: f64 = 10.0;
const ANGLE_OK: f64 = 3.0;

/// Cue accuracy over frames.
#[derive(Debug, Clone, Default)]
struct CueScore {
    /// Frames whose cue tip is in view.
    visible: u64,
    /// Of those, frames where a cue was reported.
    found: u64,
    /// Of those, frames within [`TIP_OK`] and [`ANGLE_OK`].
    ok: u64,
    /// Frames with no cue in view where one was reported.
    phantom: u64,
    tip_err: Vec<f64>,
    angle_err: Vec<f64>,
}

impl CueScore {
    fn add(&mut self, truth: Option<&CueTruth>, d: &FrameDetections) {
        let Some(t) = truth else {
            self.phantom += u64::from(d.cue.is_some());
            return;
        };
        self.visible += 1;
        let Some(c) = &d.cue else {
            return;
        };
        self.found += 1;
        let tip = (((c.tip[0] - t.tip[0]).powi(2) + (c.tip[1] - t.tip[1]).powi(2)) as f64).sqrt();
        let angle = ((c.angle_deg - t.angle_deg) as f64 + 540.0).rem_euclid(360.0) - 180.0;
        self.tip_err.push(tip);
        self.angle_err.push(angle.abs());
        self.ok += u64::from(tip <= TIP_OK && angle.abs() <= ANGLE_OK);
    }

    fn pct(v: &[f64], q: f64) -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[((s.len() - 1) as f64 * q).round() as usize]
    }
}

/// One condition on one renderer.
struct Row {
    condition: &'static str,
    renderer: &'static str,
    score: Score,
    cue: CueScore,
    corner_max: f64,
}

/// The conditions named by `--condition` (`all` or one name).
fn parse(name: &str) -> Result<Vec<Condition>> {
    if name == "all" {
        return Ok(Condition::ALL.to_vec());
    }
    match Condition::from_name(name) {
        Some(c) => Ok(vec![c]),
        None => bail!(
            "unknown condition {name:?}: use all or one of {}",
            Condition::ALL.map(|c| c.name()).join(", ")
        ),
    }
}

/// Mean distance of matching corners, over the best rotation of the order.
fn corner_error(t: &[[f32; 2]; 4], d: &[[f32; 2]; 4]) -> f64 {
    (0..4)
        .map(|rot| {
            (0..4)
                .map(|i| {
                    let (a, b) = (t[i], d[(i + rot) % 4]);
                    (((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)) as f64).sqrt()
                })
                .sum::<f64>()
                / 4.0
        })
        .fold(f64::INFINITY, f64::min)
}

/// Runs the report.
pub fn run(args: &Args, name: &str) -> Result<()> {
    let conditions = parse(name)?;
    let mut rows = Vec::new();
    for &c in &conditions {
        let want =
            |r: super::Renderer| args.renderer == r || args.renderer == super::Renderer::Both;
        if want(super::Renderer::Official) {
            rows.push(official(args, c).with_context(|| format!("official, {}", c.name()))?);
        }
        if want(super::Renderer::Alt) {
            rows.push(alt_renderer(args, c).with_context(|| format!("alt, {}", c.name()))?);
        }
    }
    println!(
        "\n{:<12} {:<9} {:>6} {:>6} {:>7} {:>9} {:>8} {:>7} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>7}",
        "condition",
        "renderer",
        "frames",
        "balls",
        "recall",
        "precision",
        "kind_acc",
        "tables",
        "corner_px",
        "corner_mx",
        "cue_vis",
        "cue_ok",
        "tip_p95px",
        "ang_p95dg",
        "phantom"
    );
    for r in &rows {
        let s = &r.score;
        let cue_ok = if r.cue.visible == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", r.cue.ok as f64 / r.cue.visible as f64)
        };
        println!(
            "{:<12} {:<9} {:>6} {:>6} {:>7.4} {:>9.4} {:>8.4} {:>7} {:>9.2} {:>9.2} {:>8} {:>8} {:>9.2} {:>9.2} {:>7}",
            r.condition,
            r.renderer,
            s.frames,
            s.truths,
            s.recall(),
            s.precision(),
            s.kind_accuracy(),
            format!("{}/{}", s.tables_found, s.frames),
            s.mean_corner_error(),
            r.corner_max,
            r.cue.visible,
            cue_ok,
            CueScore::pct(&r.cue.tip_err, 0.95),
            CueScore::pct(&r.cue.angle_err, 0.95),
            r.cue.phantom,
        );
    }
    let goals = rows.iter().filter(|r| {
        r.score.recall() < 0.95 || r.score.precision() < 0.95 || r.score.kind_accuracy() < 0.90
    });
    let misses: Vec<String> = goals
        .map(|r| format!("{}/{}", r.condition, r.renderer))
        .collect();
    println!(
        "\ngoals (recall and precision >= 0.95, kind accuracy >= 0.90): {}",
        if misses.is_empty() {
            "met by every row".to_string()
        } else {
            format!("missed by {}", misses.join(", "))
        }
    );
    if conditions.contains(&Condition::Cue) && args.bench > 0 {
        cue_speed(args)?;
    }
    Ok(())
}

fn official(args: &Args, cond: Condition) -> Result<Row> {
    let mut row = Row {
        condition: cond.name(),
        renderer: "official",
        score: Score::default(),
        cue: CueScore::default(),
        corner_max: 0.0,
    };
    let mut det = Detector::default();
    let mut mat = Mat::default();
    let seeds = args.seeds.max(1);
    for g in 0..seeds {
        let seed = args.first_seed + g as u64;
        let style = cond.style(SceneStyle::varied(seed), seed);
        let mut scene =
            Scene::new(SceneParams::new(args.width, args.height, seed).with_style(style))?;
        let n = args.frames / seeds + u32::from(g < args.frames % seeds);
        for i in 0..n {
            scene.step(args.step);
            let mut gt = scene.render_mat(&mut mat)?;
            let cue = cond.apply(
                mat.data_bytes_mut()?,
                args.width,
                args.height,
                &mut gt,
                seed * 100_003 + i as u64,
            );
            let truth = official_truth(&gt, args.width, args.height);
            let d = det.detect(&mat)?;
            let name = format!("official-{}-{seed}-{i}", cond.name());
            judge(args, &mut row, &name, &mat, &truth, cue.as_ref(), &d)?;
        }
    }
    Ok(row)
}

fn alt_renderer(args: &Args, cond: Condition) -> Result<Row> {
    let mut row = Row {
        condition: cond.name(),
        renderer: "alt",
        score: Score::default(),
        cue: CueScore::default(),
        corner_max: 0.0,
    };
    let mut det = Detector::default();
    let mut buf = Vec::new();
    for i in 0..args.frames as u64 {
        if args.only_frame.is_some_and(|k| k != i) {
            continue;
        }
        let seed = args.first_seed * 1000 + i;
        let sc = alt::scene_for(cond, AltScene::random(args.width, args.height, seed));
        let mut truth = render_alt(&sc, &mut buf);
        let cue = alt::apply(
            cond,
            &mut buf,
            args.width as usize,
            args.height as usize,
            &mut truth,
            seed,
        );
        let mat = bgr_mat(&buf, args.width, args.height)?;
        let d = det.detect(&mat)?;
        let name = format!("alt-{}-{seed}", cond.name());
        judge(args, &mut row, &name, &mat, &truth, cue.as_ref(), &d)?;
    }
    Ok(row)
}

/// With `--dump`: writes frames whose table is off by more than 10 pixels (or missing), with
/// the true table in green and the found one in magenta.
/// Scores frame `name` into `row` and, when asked, dumps its table and cue pictures.
fn judge(
    args: &Args,
    row: &mut Row,
    name: &str,
    mat: &Mat,
    truth: &Truth,
    cue: Option<&CueTruth>,
    d: &FrameDetections,
) -> Result<()> {
    let verbose = args.verbose.then_some(name);
    let lost = score(row, &truth.balls, &truth.corners, cue, d, verbose);
    dump_table(args, name, mat, &truth.corners, d)?;
    if lost {
        dump_balls(args, name, mat, truth, d)?;
    }
    dump_cue(args, name, mat, cue, d)
}

/// With `--dump`: writes frames with a lost or an extra ball, the true balls in green and
/// the reported ones in magenta.
fn dump_balls(
    args: &Args,
    name: &str,
    mat: &Mat,
    truth: &Truth,
    d: &FrameDetections,
) -> Result<()> {
    use opencv::core::{Point, Scalar, Vector};
    use opencv::imgproc;
    let Some(dir) = &args.dump else {
        return Ok(());
    };
    let mut img = mat.clone();
    for b in &truth.balls {
        let c = Point::new(b.x.round() as i32, b.y.round() as i32);
        let r = b.radius.round() as i32 + 3;
        imgproc::circle(
            &mut img,
            c,
            r,
            Scalar::new(0.0, 255.0, 0.0, 0.0),
            1,
            imgproc::LINE_AA,
            0,
        )?;
    }
    for b in &d.balls {
        let c = Point::new(b.x.round() as i32, b.y.round() as i32);
        let r = (b.radius.round() as i32 - 3).max(1);
        imgproc::circle(
            &mut img,
            c,
            r,
            Scalar::new(255.0, 0.0, 255.0, 0.0),
            1,
            imgproc::LINE_AA,
            0,
        )?;
    }
    let path = dir.join(format!("balls-{name}.png"));
    opencv::imgcodecs::imwrite(&*path.to_string_lossy(), &img, &Vector::new())?;
    Ok(())
}

fn dump_table(
    args: &Args,
    name: &str,
    mat: &Mat,
    truth: &[[f32; 2]; 4],
    d: &FrameDetections,
) -> Result<()> {
    use opencv::core::{Point, Scalar, Vector};
    use opencv::imgproc;
    let Some(dir) = &args.dump else {
        return Ok(());
    };
    let found = d.table.as_ref().map(|t| t.corners);
    if found.is_some_and(|c| corner_error(truth, &c) <= 10.0) {
        return Ok(());
    }
    // A dim frame is brightened so the dump can be looked at.
    let mean = opencv::core::mean(mat, &opencv::core::no_array())?;
    let lift = (90.0 / (mean[0] + mean[1] + mean[2]).max(1.0) * 3.0).max(1.0);
    let mut img = Mat::default();
    mat.convert_to(&mut img, -1, lift, 0.0)?;
    let mut quad = |q: &[[f32; 2]; 4], colour: Scalar| -> Result<()> {
        for k in 0..4 {
            let (a, b) = (q[k], q[(k + 1) % 4]);
            let p = Point::new(a[0].round() as i32, a[1].round() as i32);
            let q = Point::new(b[0].round() as i32, b[1].round() as i32);
            imgproc::line(&mut img, p, q, colour, 1, imgproc::LINE_AA, 0)?;
        }
        Ok(())
    };
    quad(truth, Scalar::new(0.0, 255.0, 0.0, 0.0))?;
    if let Some(c) = &found {
        quad(c, Scalar::new(255.0, 0.0, 255.0, 0.0))?;
    }
    let path = dir.join(format!("table-{name}.png"));
    opencv::imgcodecs::imwrite(&*path.to_string_lossy(), &img, &Vector::new())?;
    Ok(())
}

/// With `--dump`: writes frames whose cue is wrong (missed, off, or reported where there is
/// none) with the true cue in green and the reported one in magenta.
fn dump_cue(
    args: &Args,
    name: &str,
    mat: &Mat,
    truth: Option<&CueTruth>,
    d: &FrameDetections,
) -> Result<()> {
    use opencv::core::{Point, Scalar, Vector};
    use opencv::imgproc;
    let Some(dir) = &args.dump else {
        return Ok(());
    };
    let wrong = match (truth, &d.cue) {
        (None, None) => false,
        (Some(t), Some(c)) => {
            let tip = ((c.tip[0] - t.tip[0]).powi(2) + (c.tip[1] - t.tip[1]).powi(2)).sqrt();
            let a = ((c.angle_deg - t.angle_deg) + 540.0).rem_euclid(360.0) - 180.0;
            tip as f64 > TIP_OK || a.abs() as f64 > ANGLE_OK
        }
        _ => true,
    };
    if !wrong {
        return Ok(());
    }
    if args.verbose {
        println!(
            "  {name}: cue truth {truth:?}, reported {:?}, table {:?}",
            d.cue,
            d.table.as_ref().map(|t| t.corners)
        );
    }
    let mut img = mat.clone();
    let mut line = |tip: [f32; 2], deg: f32, colour: Scalar| -> Result<()> {
        let a = deg.to_radians();
        let p = Point::new(tip[0].round() as i32, tip[1].round() as i32);
        let q = Point::new(
            (tip[0] - 200.0 * a.cos()).round() as i32,
            (tip[1] - 200.0 * a.sin()).round() as i32,
        );
        imgproc::line(&mut img, p, q, colour, 1, imgproc::LINE_AA, 0)?;
        imgproc::circle(&mut img, p, 6, colour, 1, imgproc::LINE_AA, 0)?;
        Ok(())
    };
    if let Some(t) = truth {
        line(t.tip, t.angle_deg, Scalar::new(0.0, 255.0, 0.0, 0.0))?;
    }
    if let Some(c) = &d.cue {
        line(c.tip, c.angle_deg, Scalar::new(255.0, 0.0, 255.0, 0.0))?;
    }
    let path = dir.join(format!("cue-{name}.png"));
    opencv::imgcodecs::imwrite(&*path.to_string_lossy(), &img, &Vector::new())?;
    Ok(())
}

fn score(
    row: &mut Row,
    balls: &[billiards_vision_worker::scene::TrueBall],
    corners: &[[f32; 2]; 4],
    cue: Option<&CueTruth>,
    d: &FrameDetections,
    verbose: Option<&str>,
) -> bool {
    let dc = d.table.as_ref().map(|t| &t.corners);
    let before = (row.score.matched, row.score.truths, row.score.detections);
    row.score.add(balls, Some(corners), &d.balls, dc);
    let lost = row.score.matched - before.0 < row.score.truths - before.1
        || row.score.detections - before.2 > row.score.matched - before.0;
    if let Some(name) = verbose {
        let found = row.score.matched - before.0;
        let truth = row.score.truths - before.1;
        let corner = dc.map(|c| corner_error(corners, c));
        let extra = row.score.detections - before.2 > row.score.matched - before.0;
        if found < truth || extra || corner.is_none_or(|e| e > 10.0) {
            println!(
                "  {name}: {found}/{truth} balls found, {} reported, table corner error {corner:?}",
                d.balls.len()
            );
            let pairs = billiards_vision_worker::eval::match_balls(balls, &d.balls);
            for (i, b) in balls.iter().enumerate() {
                if !pairs.iter().any(|&(t, _)| t == i) {
                    println!(
                        "    lost ball {} at ({:.1}, {:.1}) r {:.1}",
                        b.number, b.x, b.y, b.radius
                    );
                }
            }
            for (j, b) in d.balls.iter().enumerate() {
                if !pairs.iter().any(|&(_, k)| k == j) {
                    println!("    extra ball at ({:.1}, {:.1})", b.x, b.y);
                }
            }
        }
    }
    if let Some(dc) = dc {
        row.corner_max = row.corner_max.max(corner_error(corners, dc));
    }
    row.cue.add(cue, d);
    lost
}

/// Frames per second on one core at the chosen size with a cue on the table: `process()` (the
/// worker's steady state, table held) over official frames with a cue drawn on each.
fn cue_speed(args: &Args) -> Result<()> {
    let seed = args.first_seed;
    let mut scene = Scene::new(
        SceneParams::new(args.width, args.height, seed).with_style(SceneStyle::varied(seed)),
    )?;
    let mut frames = Vec::new();
    for i in 0..8u64 {
        scene.step(0.05);
        let mut m = Mat::default();
        let mut gt = scene.render_mat(&mut m)?;
        Condition::Cue.apply(m.data_bytes_mut()?, args.width, args.height, &mut gt, i);
        frames.push(m);
    }
    let mut det = Detector::default();
    let n = args.bench.max(1) as usize;
    let mut cpu = Vec::with_capacity(n);
    let mut wall = Vec::with_capacity(n);
    let mut with_cue = 0usize;
    for i in 0..n {
        let f = &frames[i % frames.len()];
        let (t, c) = (Instant::now(), thread_cpu_ms());
        let d = det.process(f)?;
        cpu.push(thread_cpu_ms() - c);
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        with_cue += usize::from(d.cue.is_some());
    }
    cpu.sort_by(f64::total_cmp);
    wall.sort_by(f64::total_cmp);
    let mean = cpu.iter().sum::<f64>() / n as f64;
    println!(
        "\nspeed with the cue on, one thread, {}x{}, process() (table held): CPU mean {mean:.2} ms ({:.0} frames/s on one core), p50 {:.2} ms, p99 {:.2} ms; wall p50 {:.2} ms; cue reported in {with_cue}/{n} frames",
        args.width,
        args.height,
        1000.0 / mean,
        cpu[n / 2],
        cpu[((n - 1) as f64 * 0.99).round() as usize],
        wall[n / 2],
    );
    super::print_profile(&det);
    Ok(())
}
