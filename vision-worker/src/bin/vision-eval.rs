//! `vision-eval`: accuracy and speed of the detector on synthetic frames with ground truth.
//!
//! Two independent renderers are scored: the video worker's official synthetic table
//! (`billiards_video_worker::synthetic`, `SceneStyle::varied(seed)`: several frames of a
//! moving game per seed) and this crate's own "alt" renderer (`scene::AltScene`, one new scene
//! per frame), so that the figures are not those of a detector tuned to one look.
//!
//! ```text
//! cargo run --release -p billiards-vision-worker --bin vision-eval -- --frames 500 --seeds 5
//! cargo run --release -p billiards-vision-worker --bin vision-eval -- --condition all
//! ```
//!
//! `--sequence SECONDS` scores the tracker over time instead (numbers, ids, pockets, shots):
//! the official renderer in play mode, and the alt renderer's still scenes seen for a few
//! frames each.
//! `--condition NAME|all` scores each condition of real play on its own (see
//! `conditions.rs` beside this file).

#[path = "vision-eval/conditions.rs"]
mod conditions;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use billiards_vision_worker::detect::Detector;
use billiards_vision_worker::eval::{match_balls, Score};
use billiards_vision_worker::model::{BallKind, FrameDetections};
use billiards_vision_worker::scene::{render_alt, AltScene, TrueBall, Truth};
use clap::{Parser, ValueEnum};
use opencv::core::{Mat, Point, Rect, Scalar, Size, Vector, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;
use video_worker::synthetic::{self, Scene, SceneParams, SceneStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Renderer {
    /// The video worker's synthetic table.
    Official,
    /// This crate's independent renderer.
    Alt,
    /// Both.
    Both,
}

/// Scores the detector on synthetic frames and measures its speed.
#[derive(Debug, Parser)]
#[command(name = "vision-eval", version)]
struct Args {
    /// Frames per renderer.
    #[arg(long, default_value_t = 500)]
    frames: u32,
    /// Scene seeds of the official renderer (the frames are spread over them); the alt
    /// renderer draws a new scene for every frame.
    #[arg(long, default_value_t = 5)]
    seeds: u32,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Which renderer(s) to score.
    #[arg(long, value_enum, default_value_t = Renderer::Both)]
    renderer: Renderer,
    /// Frame width.
    #[arg(long, default_value_t = 1280)]
    width: u32,
    /// Frame height.
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Simulated seconds between two frames of an official scene.
    #[arg(long, default_value_t = 0.4)]
    step: f64,
    /// Detection calls timed for the speed figures (0 = skip).
    #[arg(long, default_value_t = 300)]
    bench: u32,
    /// Write annotated frames with errors and a contact sheet of the wrong balls here.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Print one line per frame with an error.
    #[arg(long)]
    verbose: bool,
    /// With `--condition`: score only the alt renderer's frame of this index (its scene seed is
    /// `first_seed * 1000 + index`, the number in the `--verbose` lines), to look at one frame.
    #[arg(long)]
    only_frame: Option<u64>,
    /// Append one CSV line per detection (renderer, matched, support, rms in radii, radius)
    /// to this file, to study the acceptance thresholds.
    #[arg(long)]
    candidates: Option<PathBuf>,
    /// Instead of scoring: run the real worker binary (beside this one) on a frame segment fed
    /// at `--fps` with official 1280x720 frames for this many seconds, and report the
    /// capture-to-published latency of its detections.
    #[arg(long, value_name = "SECONDS")]
    latency: Option<f64>,
    /// Frame rate of the `--latency` feeder.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Official renderer: the plain style (clean green cloth, flat light, overhead) with
    /// scattered balls, instead of `SceneStyle::varied(seed)`.
    #[arg(long)]
    plain: bool,
    /// Official renderer: pass each frame through a lens with these pinhole coefficients
    /// (`K1,K2,P1,P2[,K3]`, the synthetic source's `video.source.distortion`), then undo it
    /// with the video worker's undistortion, as a calibrated camera would deliver frames.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        value_name = "K1,K2,P1,P2"
    )]
    lens: Option<Vec<f64>>,
    /// With `--lens`: score the distorted frames without correcting them (the baseline).
    #[arg(long, requires = "lens")]
    uncorrected: bool,
    /// Instead of the per-frame scores: follow each official seed in play mode for this many
    /// seconds at 30 fps (and the alt renderer's still scenes for `--alt-frames` frames each)
    /// with the tracker, and report number accuracy, id switches, pocket events and shot
    /// boundaries.
    #[arg(long, value_name = "SECONDS")]
    sequence: Option<f64>,
    /// With `--sequence`: frames each alt scene is seen for (the numbers are scored from the
    /// fifth on, once the vote has evidence).
    #[arg(long, default_value_t = 10)]
    alt_frames: u32,
    /// With `--sequence`: keep every frame's detections and truth in this file, and when it
    /// exists (written by the same command) replay them instead of rendering and detecting
    /// again: the tracker's figures in seconds while it is tuned.
    #[arg(long, value_name = "FILE", requires = "sequence")]
    sequence_cache: Option<PathBuf>,
    /// Instead of the overall scores: score each condition of real play on its own (`all`,
    /// or one of clear, glare, cue, hand, low-light, tilt, rack, motion-blur), with the cue's
    /// tip and angle errors, and the speed with a cue on the table.
    #[arg(long, value_name = "NAME|all")]
    condition: Option<String>,
}

/// Distorts a rendered frame and corrects it again with the video worker's own maps.
struct LensRoundTrip {
    distort: video_worker::calibration::Remapper,
    undistort: video_worker::calibration::Remapper,
    distorted: Vec<u8>,
    corrected: Vec<u8>,
    correct: bool,
}

impl LensRoundTrip {
    fn new(coeffs: &[f64], width: u32, height: u32, correct: bool) -> Result<Self> {
        use video_worker::calibration::{Calibration, Remapper};
        let k = config::SourceConfig::synthetic_camera_matrix(width, height);
        let (w, h) = (width as i32, height as i32);
        let cal = Calibration {
            camera_matrix: k,
            dist_coeffs: coeffs.to_vec(),
            image_width: w,
            image_height: h,
            model: Some(config::LensModel::Pinhole),
        };
        let cfg = config::CalibrationConfig {
            file: "vision-eval --lens".into(),
            ..Default::default()
        };
        let len = (width * height * 3) as usize;
        Ok(LensRoundTrip {
            distort: Remapper::distort(&k, coeffs, w, h)?,
            undistort: Remapper::undistort(&cal, &cfg)?,
            distorted: vec![0; len],
            corrected: vec![0; len],
            correct,
        })
    }

    /// Replaces `frame` by its distorted-then-corrected version.
    fn apply(&mut self, frame: &mut Mat) -> Result<()> {
        self.distort
            .remap_into(frame, &mut self.distorted)
            .map_err(anyhow::Error::msg)?;
        if !self.correct {
            frame.data_bytes_mut()?.copy_from_slice(&self.distorted);
            return Ok(());
        }
        let rows = frame.rows();
        let distorted = Mat::from_slice(&self.distorted)?
            .reshape(3, rows)?
            .try_clone()?;
        self.undistort
            .remap_into(&distorted, &mut self.corrected)
            .map_err(anyhow::Error::msg)?;
        frame.data_bytes_mut()?.copy_from_slice(&self.corrected);
        Ok(())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The detector's trace lines, when asked for (`RUST_LOG=billiards_vision_worker=trace`).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    // One core, as the speed goal says (OpenCV would otherwise spread over every core).
    opencv::core::set_num_threads(1)?;
    if let Some(secs) = args.latency {
        return latency::run(&args, secs);
    }
    if let Some(secs) = args.sequence {
        return sequence::run(&args, secs);
    }
    if let Some(name) = &args.condition {
        return conditions::run(&args, name);
    }
    if let Some(d) = &args.dump {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut rows = Vec::new();
    if matches!(args.renderer, Renderer::Official | Renderer::Both) {
        rows.push(("official", eval_official(&args)?));
    }
    if matches!(args.renderer, Renderer::Alt | Renderer::Both) {
        rows.push(("alt", eval_alt(&args)?));
    }
    println!();
    println!(
        "{:<9} {:>6} {:>6} {:>7} {:>9} {:>10} {:>8} {:>8} {:>10} {:>7} {:>10}",
        "renderer",
        "frames",
        "balls",
        "recall",
        "precision",
        "centre_px",
        "max_px",
        "radius_px",
        "kind_acc",
        "tables",
        "corner_px"
    );
    for (name, s) in &rows {
        println!(
            "{:<9} {:>6} {:>6} {:>7.4} {:>9.4} {:>10.3} {:>8.2} {:>8.3} {:>10.4} {:>7} {:>10.2}",
            name,
            s.frames,
            s.truths,
            s.recall(),
            s.precision(),
            s.mean_centre_error(),
            s.centre_err_max,
            s.mean_radius_error(),
            s.kind_accuracy(),
            format!("{}/{}", s.tables_found, s.frames),
            s.mean_corner_error()
        );
    }
    for (name, s) in &rows {
        println!("\nkind confusion, {name} renderer (rows: truth, columns: detected)");
        print!("{}", s.confusion_table());
    }
    if args.bench > 0 {
        bench(&args)?;
    }
    Ok(())
}

fn official_truth(gt: &synthetic::GroundTruth, w: u32, h: u32) -> Truth {
    let kind = |k: synthetic::BallKind| match k {
        synthetic::BallKind::Cue => BallKind::Cue,
        synthetic::BallKind::Eight => BallKind::Eight,
        synthetic::BallKind::Solid => BallKind::Solid,
        synthetic::BallKind::Stripe => BallKind::Stripe,
    };
    Truth {
        // Balls outside the frame cannot be seen; pocketed ones are not in the truth.
        balls: gt
            .balls
            .iter()
            .filter(|b| b.x >= 0.0 && b.y >= 0.0 && b.x < w as f32 && b.y < h as f32)
            .map(|b| TrueBall {
                x: b.x,
                y: b.y,
                radius: b.radius,
                number: b.number as u32,
                kind: kind(b.kind),
            })
            .collect(),
        corners: gt.table_corners,
    }
}

fn eval_official(args: &Args) -> Result<Score> {
    let mut total = Score::default();
    let mut det = Detector::default();
    let mut mat = Mat::default();
    let seeds = args.seeds.max(1);
    let mut sheet = Vec::new();
    let mut lens = match &args.lens {
        Some(c) => Some(LensRoundTrip::new(
            c,
            args.width,
            args.height,
            !args.uncorrected,
        )?),
        None => None,
    };
    println!(
        "official renderer: {} frames over {} seeds{}",
        args.frames,
        seeds,
        match &args.lens {
            Some(c) if args.uncorrected => format!(", through lens {c:?}, uncorrected"),
            Some(c) => format!(", through lens {c:?} and back"),
            None => String::new(),
        }
    );
    for g in 0..seeds {
        let seed = args.first_seed + g as u64;
        let style = if args.plain {
            SceneStyle {
                layout: synthetic::Layout::Scattered,
                ..SceneStyle::plain()
            }
        } else {
            SceneStyle::varied(seed)
        };
        let mut scene =
            Scene::new(SceneParams::new(args.width, args.height, seed).with_style(style.clone()))
                .with_context(|| format!("official scene {seed}"))?;
        let n = args.frames / seeds + u32::from(g < args.frames % seeds);
        let mut s = Score::default();
        for i in 0..n {
            scene.step(args.step);
            let gt = scene.render_mat(&mut mat)?;
            if let Some(l) = lens.as_mut() {
                l.apply(&mut mat)?;
            }
            let truth = official_truth(&gt, args.width, args.height);
            let d = det.detect(&mat)?;
            let before = s.clone();
            s.add(
                &truth.balls,
                Some(&truth.corners),
                &d.balls,
                d.table.as_ref().map(|t| &t.corners),
            );
            report_frame(
                args,
                &format!("official-{seed}-{i}"),
                &mat,
                &truth,
                &d,
                &before,
                &s,
                &mut sheet,
            )?;
        }
        println!(
            "  seed {seed:>3}: cloth {:?} lighting {:.2} noise {:>4.1} tilt {:>4.1} roll {:>4.1} zoom {:.2} {:?}: recall {:.4} precision {:.4} centre {:.3} px kind {:.4} corners {:.1} px",
            style.cloth, style.lighting, style.noise, style.tilt_deg, style.roll_deg, style.zoom, style.layout,
            s.recall(), s.precision(), s.mean_centre_error(), s.kind_accuracy(), s.mean_corner_error()
        );
        total.merge(&s);
    }
    write_sheet(args, "official", &sheet)?;
    Ok(total)
}

fn eval_alt(args: &Args) -> Result<Score> {
    let mut total = Score::default();
    let mut det = Detector::default();
    let mut buf = Vec::new();
    let mut sheet = Vec::new();
    println!("alt renderer: {} frames, one scene each", args.frames);
    for i in 0..args.frames as u64 {
        let seed = args.first_seed * 1000 + i;
        let sc = AltScene::random(args.width, args.height, seed);
        let truth = render_alt(&sc, &mut buf);
        let mat = bgr_mat(&buf, args.width, args.height)?;
        let d = det.detect(&mat)?;
        let before = total.clone();
        total.add(
            &truth.balls,
            Some(&truth.corners),
            &d.balls,
            d.table.as_ref().map(|t| &t.corners),
        );
        report_frame(
            args,
            &format!("alt-{seed}"),
            &mat,
            &truth,
            &d,
            &before,
            &total,
            &mut sheet,
        )?;
    }
    write_sheet(args, "alt", &sheet)?;
    Ok(total)
}

fn bgr_mat(buf: &[u8], w: u32, h: u32) -> Result<Mat> {
    let m = Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(h as i32, w as i32, buf)?;
    Ok(m.clone_pointee())
}

#[allow(clippy::too_many_arguments)]
fn report_frame(
    args: &Args,
    name: &str,
    mat: &Mat,
    truth: &Truth,
    d: &FrameDetections,
    before: &Score,
    after: &Score,
    sheet: &mut Vec<Mat>,
) -> Result<()> {
    if let Some(path) = &args.candidates {
        use std::io::Write;
        let pairs = match_balls(&truth.balls, &d.balls);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for (j, b) in d.balls.iter().enumerate() {
            let matched = pairs.iter().any(|p| p.1 == j);
            let truth_kind = pairs
                .iter()
                .find(|p| p.1 == j)
                .map_or("none", |p| truth.balls[p.0].kind.as_str());
            let k = &b.features;
            writeln!(
                f,
                "{},{},{:.3},{:.4},{:.2},{},{},{:.3},{:.3},{:.3},{:.3},{}",
                name.split('-').next().unwrap_or(""),
                u8::from(matched),
                b.score,
                b.fit_rms,
                b.radius,
                truth_kind,
                b.kind.as_str(),
                k.white,
                k.dark,
                k.colour,
                k.ring_colour,
                u8::from(k.two_sided)
            )?;
        }
    }
    let missed = (after.truths - before.truths) - (after.matched - before.matched);
    let extra = (after.detections - before.detections) - (after.matched - before.matched);
    let wrong_kind = (after.matched - before.matched) - (after.kind_right - before.kind_right);
    if missed + extra + wrong_kind == 0 && d.table.is_some() {
        return Ok(());
    }
    if args.verbose {
        println!(
            "  {name}: {} balls, missed {missed}, extra {extra}, wrong kind {wrong_kind}, table {}",
            truth.balls.len(),
            d.table.is_some()
        );
    }
    if let Some(dir) = &args.dump {
        annotate(mat, truth, d, &dir.join(format!("{name}.png")))?;
        if sheet.len() < 96 {
            tiles(mat, truth, d, sheet)?;
        }
    }
    Ok(())
}

fn annotate(mat: &Mat, truth: &Truth, d: &FrameDetections, path: &Path) -> Result<()> {
    let mut img = mat.clone();
    for b in &truth.balls {
        let c = Point::new(b.x.round() as i32, b.y.round() as i32);
        imgproc::circle(
            &mut img,
            c,
            b.radius.round() as i32 + 3,
            Scalar::new(0.0, 255.0, 0.0, 0.0),
            1,
            imgproc::LINE_AA,
            0,
        )?;
    }
    for b in &d.balls {
        let c = Point::new(b.x.round() as i32, b.y.round() as i32);
        imgproc::circle(
            &mut img,
            c,
            b.radius.round() as i32,
            Scalar::new(255.0, 0.0, 255.0, 0.0),
            1,
            imgproc::LINE_AA,
            0,
        )?;
        imgproc::put_text(
            &mut img,
            &b.kind.as_str()[..2],
            Point::new(c.x + 8, c.y - 8),
            imgproc::FONT_HERSHEY_SIMPLEX,
            0.4,
            Scalar::new(255.0, 255.0, 0.0, 0.0),
            1,
            imgproc::LINE_AA,
            false,
        )?;
    }
    if let Some(t) = &d.table {
        for i in 0..4 {
            let (a, b) = (t.corners[i], t.corners[(i + 1) % 4]);
            imgproc::line(
                &mut img,
                Point::new(a[0] as i32, a[1] as i32),
                Point::new(b[0] as i32, b[1] as i32),
                Scalar::new(0.0, 255.0, 255.0, 0.0),
                1,
                imgproc::LINE_AA,
                0,
            )?;
        }
    }
    opencv::imgcodecs::imwrite(&*path.to_string_lossy(), &img, &Vector::new())?;
    Ok(())
}

/// 4x crops of every missed, extra or misclassified ball.
fn tiles(mat: &Mat, truth: &Truth, d: &FrameDetections, out: &mut Vec<Mat>) -> Result<()> {
    let pairs = match_balls(&truth.balls, &d.balls);
    let mut spots: Vec<(f32, f32, String)> = Vec::new();
    for (i, t) in truth.balls.iter().enumerate() {
        match pairs.iter().find(|p| p.0 == i) {
            None => spots.push((t.x, t.y, format!("miss {}", t.kind.as_str()))),
            Some(&(_, j)) if d.balls[j].kind != t.kind => spots.push((
                t.x,
                t.y,
                format!("{}>{}", t.kind.as_str(), d.balls[j].kind.as_str()),
            )),
            _ => {}
        }
    }
    for (j, b) in d.balls.iter().enumerate() {
        if !pairs.iter().any(|p| p.1 == j) {
            spots.push((b.x, b.y, format!("extra {}", b.kind.as_str())));
        }
    }
    for (x, y, label) in spots {
        if mat.cols() < 48 || mat.rows() < 48 {
            break;
        }
        let x0 = (x as i32 - 24).clamp(0, mat.cols() - 48);
        let y0 = (y as i32 - 24).clamp(0, mat.rows() - 48);
        let roi = Mat::roi(mat, Rect::new(x0, y0, 48, 48))?;
        let mut big = Mat::default();
        imgproc::resize(
            &roi,
            &mut big,
            Size::new(192, 192),
            0.0,
            0.0,
            imgproc::INTER_NEAREST,
        )?;
        imgproc::put_text(
            &mut big,
            &label,
            Point::new(3, 14),
            imgproc::FONT_HERSHEY_SIMPLEX,
            0.45,
            Scalar::new(0.0, 255.0, 255.0, 0.0),
            1,
            imgproc::LINE_AA,
            false,
        )?;
        out.push(big);
    }
    Ok(())
}

fn write_sheet(args: &Args, name: &str, tiles: &[Mat]) -> Result<()> {
    let Some(dir) = &args.dump else {
        return Ok(());
    };
    if tiles.is_empty() {
        return Ok(());
    }
    let blank = Mat::new_rows_cols_with_default(192, 192, CV_8UC3, Scalar::all(0.0))?;
    let mut rows: Vector<Mat> = Vector::new();
    for chunk in tiles.chunks(8) {
        let mut v: Vector<Mat> = chunk.iter().cloned().collect();
        while v.len() < 8 {
            v.push(blank.clone());
        }
        let mut r = Mat::default();
        opencv::core::hconcat(&v, &mut r)?;
        rows.push(r);
    }
    let mut out = Mat::default();
    opencv::core::vconcat(&rows, &mut out)?;
    let path = dir.join(format!("sheet-{name}.png"));
    opencv::imgcodecs::imwrite(&*path.to_string_lossy(), &out, &Vector::new())?;
    println!("  contact sheet of errors: {}", path.display());
    Ok(())
}

/// Times `detect` (table found from scratch every frame) and `process` (the worker's steady
/// state: the table held while it fits) on frames of both renderers.
fn bench(args: &Args) -> Result<()> {
    let mut frames = Vec::new();
    for k in 0..4u64 {
        let seed = args.first_seed + k;
        let mut scene = Scene::new(
            SceneParams::new(args.width, args.height, seed).with_style(SceneStyle::varied(seed)),
        )?;
        scene.step(1.0);
        let mut m = Mat::default();
        scene.render_mat(&mut m)?;
        frames.push(m);
        let mut buf = Vec::new();
        render_alt(&AltScene::random(args.width, args.height, seed), &mut buf);
        frames.push(bgr_mat(&buf, args.width, args.height)?);
    }
    let n = args.bench.max(1);
    let mut det = Detector::default();
    let mut times = Vec::with_capacity(n as usize);
    let mut cpu = Vec::with_capacity(n as usize);
    for i in 0..n {
        let f = &frames[i as usize % frames.len()];
        let (t, c) = (Instant::now(), thread_cpu_ms());
        std::hint::black_box(det.detect(f)?);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        cpu.push(thread_cpu_ms() - c);
    }
    report_times(
        "detect() (table + balls, from scratch)",
        &mut times,
        &mut cpu,
        args,
    );
    print_profile(&det);
    // Steady state: one scene at a time, the table held (found again when the scene changes).
    let mut det = Detector::default();
    times.clear();
    cpu.clear();
    for i in 0..n {
        let f = &frames[(i as usize / 50 % (frames.len() / 2)) * 2];
        let (t, c) = (Instant::now(), thread_cpu_ms());
        std::hint::black_box(det.process(f)?);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        cpu.push(thread_cpu_ms() - c);
    }
    report_times(
        "process() (worker steady state)",
        &mut times,
        &mut cpu,
        args,
    );
    print_profile(&det);
    Ok(())
}

fn print_profile(det: &Detector) {
    let stages: Vec<String> = det
        .profile()
        .iter()
        .map(|(s, ms)| format!("{s} {ms:.2}"))
        .collect();
    println!("  mean ms per frame by stage: {}", stages.join(", "));
}

fn report_times(what: &str, times: &mut [f64], cpu: &mut [f64], args: &Args) {
    let stats = |v: &mut [f64]| {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (mean, p(0.5), p(0.99))
    };
    let (wm, w50, w99) = stats(times);
    let (cm, c50, c99) = stats(cpu);
    println!(
        "\nspeed, one thread, {}x{}: {what}:\n  CPU time mean {cm:.2} ms ({:.0} frames/s on one core), p50 {c50:.2} ms, p99 {c99:.2} ms\n  wall time mean {wm:.2} ms, p50 {w50:.2} ms, p99 {w99:.2} ms (includes time the machine gave to others)",
        args.width,
        args.height,
        1000.0 / cm,
    );
}

/// CPU time consumed by this thread, milliseconds (immune to other load on the machine).
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass and has no other effect.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 * 1e-6
}

/// `--latency`: the worker binary under a 30 fps feeder.
mod latency {
    use std::io::Write;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context, Result};
    use billiards_vision_worker::model::DetectionsJson;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use shm_core::{
        AttachOptions, CreateMode, PublishMeta, Reader, SegmentLocation, SegmentSpec, Writer,
    };
    use video_worker::synthetic::{RenderCache, Scene, SceneParams, SceneStyle};

    use super::Args;

    /// Kills the worker and removes the segments and the config, however we leave.
    struct Cleanup {
        child: Option<Child>,
        locs: Vec<SegmentLocation>,
        dir: std::path::PathBuf,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            for l in &self.locs {
                let _ = shm_core::unlink(l);
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn pct(v: &mut [f64], q: f64) -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    }

    pub fn run(args: &Args, secs: f64) -> Result<()> {
        let (w, h) = (args.width, args.height);
        let tag = format!("vision_lat_{}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir)?;
        let frames = SegmentLocation::new(&format!("{tag}_frames"), &dir)?;
        let det_loc = SegmentLocation::new(&format!("{tag}_det"), &dir)?;
        let mut cleanup = Cleanup {
            child: None,
            locs: vec![frames.clone(), det_loc.clone()],
            dir: dir.clone(),
        };
        let config = dir.join("billiards.toml");
        std::fs::File::create(&config)?.write_all(
            format!(
                "[video]\nshm_name = \"{}\"\nwidth = {w}\nheight = {h}\nfps = {}\nfallback_dir = \"{}\"\n\n[vision]\ndetections_shm_name = \"{}\"\n",
                frames.name(),
                args.fps.round() as u32,
                dir.display(),
                det_loc.name()
            )
            .as_bytes(),
        )?;
        let spec = SegmentSpec::frames(w, h, 3);
        shm_core::create(&frames, &spec, CreateMode::ReplaceExisting)?;

        // The feeder: renders and publishes like the video worker, stamping the capture time
        // when a frame's rendering starts.
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let feeder = {
            let (stop, published, frames) = (stop.clone(), published.clone(), frames.clone());
            let (seed, fps) = (args.first_seed, args.fps);
            std::thread::spawn(move || -> Result<()> {
                let mut scene =
                    Scene::new(SceneParams::new(w, h, seed).with_style(SceneStyle::varied(seed)))?;
                let mut writer = Writer::open(&frames, &spec)?;
                let mut buf = vec![0u8; scene.frame_len()];
                let mut cache = RenderCache::new();
                let period = Duration::from_secs_f64(1.0 / fps);
                let mut next = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    let capture = shm_core::monotonic_ns();
                    scene.step(period.as_secs_f64());
                    scene.render_incremental(&mut buf, &mut cache)?;
                    writer.publish(&buf, PublishMeta::bgr(w, h, capture))?;
                    published.fetch_add(1, Ordering::SeqCst);
                    next += period;
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    } else {
                        next = Instant::now();
                    }
                }
                Ok(())
            })
        };

        let exe = std::env::current_exe()?.with_file_name("billiards-vision-worker");
        if !exe.exists() {
            bail!(
                "{} not found: build it first (cargo build --release -p billiards-vision-worker)",
                exe.display()
            );
        }
        cleanup.child = Some(
            Command::new(&exe)
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {}", exe.display()))?,
        );
        let mut reader = Reader::attach(
            &det_loc,
            AttachOptions::new("vision-eval", Duration::from_secs(30)),
        )?;
        // Warm-up: the first frames include the first table detection.
        let warm = Instant::now() + Duration::from_secs(2);
        let end = warm + Duration::from_secs_f64(secs);
        let (mut to_published, mut to_seen, mut detect) = (Vec::new(), Vec::new(), Vec::new());
        let mut buf = Vec::new();
        let published_at_start = AtomicU64::new(0);
        let mut started = false;
        while Instant::now() < end {
            if !reader.wait_next(Duration::from_millis(200))? {
                continue;
            }
            let Some(_) = reader.read_latest(&mut buf)? else {
                continue;
            };
            let now = shm_core::monotonic_ns();
            if Instant::now() < warm {
                continue;
            }
            if !started {
                started = true;
                published_at_start.store(published.load(Ordering::SeqCst), Ordering::SeqCst);
            }
            let d: DetectionsJson = serde_json::from_slice(&buf)?;
            to_published.push(d.processed_ts_ns.saturating_sub(d.capture_ts_ns) as f64 * 1e-6);
            to_seen.push(now.saturating_sub(d.capture_ts_ns) as f64 * 1e-6);
            detect.push(d.detect_ms as f64);
        }
        let fed = published.load(Ordering::SeqCst) - published_at_start.load(Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        feeder
            .join()
            .map_err(|_| anyhow::anyhow!("feeder panicked"))??;
        drop(cleanup);
        let n = to_published.len();
        println!(
            "latency, worker binary, {w}x{h} at {} fps for {secs:.0} s: {n} detections for {fed} frames ({:.1} detections/s)",
            args.fps,
            n as f64 / secs
        );
        println!(
            "  capture -> detections published: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            pct(&mut to_published, 0.5),
            pct(&mut to_published, 0.99),
            pct(&mut to_published, 1.0)
        );
        println!(
            "  capture -> seen by a detections reader: p50 {:.2} ms, p99 {:.2} ms",
            pct(&mut to_seen, 0.5),
            pct(&mut to_seen, 0.99)
        );
        println!(
            "  detect time in the worker: p50 {:.2} ms, p99 {:.2} ms",
            pct(&mut detect, 0.5),
            pct(&mut detect, 0.99)
        );
        Ok(())
    }
}

/// `--sequence`: the tracker, numbers, pockets and shots over time (issue #14).
mod sequence {
    use super::*;
    use billiards_vision_worker::identify;
    use billiards_vision_worker::model::Ball;
    use billiards_vision_worker::sequence::{SequenceScore, TrackedFrame, TruthFrame};
    use billiards_vision_worker::track::Tracker;
    use std::fs::File;
    use std::io::{BufReader, BufWriter, Read, Write};

    const FPS: f64 = 30.0;

    pub(super) fn run(args: &Args, secs: f64) -> Result<()> {
        let mut rows = Vec::new();
        let mut cache = Cache::open(args, secs)?;
        if matches!(args.renderer, Renderer::Official | Renderer::Both) {
            rows.push(("official", official(args, secs, &mut cache)?));
        }
        if matches!(args.renderer, Renderer::Alt | Renderer::Both) {
            rows.push(("alt", alt(args, &mut cache)?));
        }
        cache.finish()?;
        println!();
        println!(
            "{:<9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>10} {:>14} {:>13} {:>13} {:>10}",
            "renderer",
            "frames",
            "matched",
            "num_acc",
            "given",
            "null",
            "switches",
            "idents",
            "per_10bm",
            "pockets f/t/d",
            "pocket_r/p",
            "shots m/t/d",
            "se<=3f"
        );
        for (name, s) in &rows {
            let p = s.pockets();
            let sh = s.shots();
            let within = sh.errors.iter().filter(|(a, b)| *a <= 3 && *b <= 3).count();
            println!(
                "{:<9} {:>7} {:>8} {:>8.4} {:>8.4} {:>8.4} {:>9} {:>7} {:>10.3} {:>14} {:>13} {:>13} {:>10}",
                name,
                s.frames,
                s.matched,
                s.number_accuracy(),
                s.given_accuracy(),
                s.null_rate(),
                s.id_switches,
                s.identifications,
                10.0 * s.switches_per_ball_minute(),
                format!("{}/{}/{}", p.found, p.truth, p.detected),
                format!(
                    "{:.3}/{:.3}",
                    p.found as f64 / p.truth.max(1) as f64,
                    p.found as f64 / p.detected.max(1) as f64
                ),
                format!("{}/{}/{}", sh.errors.len(), sh.truth, sh.detected),
                format!("{}/{}", within, sh.errors.len()),
            );
            if args.verbose {
                for (t, row) in s.numbers.iter().enumerate() {
                    let wrong: Vec<String> = row
                        .iter()
                        .enumerate()
                        .filter(|&(c, &k)| c != t && k > 0)
                        .map(|(c, k)| {
                            if c == 16 {
                                format!("null x{k}")
                            } else {
                                format!("{c} x{k}")
                            }
                        })
                        .collect();
                    println!(
                        "          truth {t:>2}: right {:>6}, {}",
                        row[t],
                        wrong.join(", ")
                    );
                }
                println!(
                    "          shots (start, end error in frames): {:?}",
                    sh.errors
                );
                for (f, n, a, b) in &s.switch_log {
                    println!("          id switch at frame {f}: ball {n} from id {a} to {b}");
                }
                let (tp, dp) = s.pocket_events();
                println!("          true pocket events (frame, number): {tp:?}");
                println!("          reported pocket events:             {dp:?}");
                let (tb, db) = s.bounds();
                println!("          true shots (start, end frame): {tb:?}");
                println!("          detected shots:                {db:?}");
            }
            if !sh.errors.is_empty() {
                let n = sh.errors.len() as f64;
                let (ms, me) = sh
                    .errors
                    .iter()
                    .fold((0.0, 0.0), |(a, b), (s, e)| (a + *s as f64, b + *e as f64));
                let max_s = sh.errors.iter().map(|e| e.0).max().unwrap_or(0);
                let max_e = sh.errors.iter().map(|e| e.1).max().unwrap_or(0);
                println!(
                    "          shot start error mean {:.2} max {} frames, end error mean {:.2} max {} frames",
                    ms / n,
                    max_s,
                    me / n,
                    max_e
                );
            }
        }
        Ok(())
    }

    fn official(args: &Args, secs: f64, cache: &mut Cache) -> Result<SequenceScore> {
        let mut score = SequenceScore::new(FPS);
        let seeds = args.seeds.max(1);
        let per_seed = (secs * FPS).round() as u64;
        println!(
            "official renderer, play mode: {seeds} seeds x {secs} s at {FPS} fps ({}x{})",
            args.width, args.height
        );
        let mut mat = Mat::default();
        let mut frame = 0u64;
        // Seconds in detection, seconds in tracking, frames.
        let mut timing = (0.0f64, 0.0f64, 0u64);
        // Per true number: summed colour value / white, summed hue (degrees), sightings.
        let mut looks = [(0.0f64, 0.0f64, 0u64); 16];
        for g in 0..seeds {
            let seed = args.first_seed + g as u64;
            let style = if args.plain {
                SceneStyle {
                    layout: synthetic::Layout::Scattered,
                    ..SceneStyle::plain()
                }
            } else {
                SceneStyle::varied(seed)
            }
            .play();
            // Replayed frames need no scene.
            let mut scene = if cache.replaying() {
                None
            } else {
                Some(
                    Scene::new(SceneParams::new(args.width, args.height, seed).with_style(style))
                        .with_context(|| format!("official scene {seed}"))?,
                )
            };
            let mut det = Detector::default();
            let mut tracker = Tracker::new();
            score.new_scene();
            let before = (score.matched, score.numbers_right, score.id_switches);
            let mut layout = 0;
            for _ in 0..per_seed {
                let rec = cache.frame(|| {
                    let scene = scene
                        .as_mut()
                        .context("official scene missing while not replaying")?;
                    scene.step(1.0 / FPS);
                    let gt = scene.render_mat(&mut mat)?;
                    let t0 = Instant::now();
                    let d = det.process(&mat)?;
                    timing.0 += t0.elapsed().as_secs_f64();
                    Ok(Rec {
                        layout: gt.layout,
                        table: d.table.map(|t| t.corners),
                        balls: d.balls,
                        truth: official_truth(&gt, args.width, args.height).balls,
                        pocketed: gt.pocketed,
                        moving: gt.moving,
                    })
                })?;
                if rec.layout != layout {
                    layout = rec.layout;
                    score.forget_ids();
                }
                let t1 = Instant::now();
                tracker.set_table(rec.table);
                let t_ns = (frame as f64 * 1e9 / FPS) as u64;
                let tracked = tracker.update(&rec.balls, t_ns);
                timing.1 += t1.elapsed().as_secs_f64();
                timing.2 += 1;
                if args.verbose {
                    // What the number is read from, per true number.
                    let white = identify::white_reference(rec.balls.iter().map(|b| b.features));
                    for t in &rec.truth {
                        let near = rec.balls.iter().find(|b| {
                            (b.x - t.x).powi(2) + (b.y - t.y).powi(2) <= t.radius.powi(2)
                        });
                        if let (Some(b), Some(w), Some(acc)) =
                            (near, white, looks.get_mut(t.number as usize))
                        {
                            let f = b.features;
                            acc.0 += (f.value / w) as f64;
                            acc.1 += f.hue[1].atan2(f.hue[0]).to_degrees() as f64;
                            acc.2 += 1;
                        }
                    }
                }
                score.add(
                    frame,
                    &TruthFrame {
                        balls: &rec.truth,
                        pocketed: &rec.pocketed,
                        moving: rec.moving,
                    },
                    &TrackedFrame {
                        balls: &tracked,
                        pocketed: tracker.pocketed(),
                        motion: tracker.motion(),
                    },
                );
                frame += 1;
            }
            // A gap, so no shot or pocket window spans two seeds.
            frame += 1000;
            let m = score.matched - before.0;
            println!(
                "  seed {seed:>3}: number accuracy {:.4}, id switches {}",
                (score.numbers_right - before.1) as f64 / m.max(1) as f64,
                score.id_switches - before.2
            );
        }
        if args.verbose {
            for (n, (v, h, k)) in looks.iter().enumerate() {
                let k = (*k).max(1) as f64;
                println!(
                    "  number {n:>2}: colour value / white {:.3}, hue {:.1} deg",
                    v / k,
                    h / k
                );
            }
        }
        let n = timing.2.max(1) as f64;
        if cache.replaying() {
            println!(
                "  per frame (one core): detections replayed, tracking + numbers {:.3} ms",
                1e3 * timing.1 / n
            );
        } else {
            println!(
                "  per frame (one core): detection {:.2} ms, tracking + numbers {:.3} ms",
                1e3 * timing.0 / n,
                1e3 * timing.1 / n
            );
        }
        Ok(score)
    }

    fn alt(args: &Args, cache: &mut Cache) -> Result<SequenceScore> {
        let mut score = SequenceScore::new(FPS);
        let scenes = args.frames;
        println!(
            "alt renderer: {scenes} still scenes seen for {} frames each",
            args.alt_frames
        );
        let mut buf = Vec::new();
        let mut frame = 0u64;
        for i in 0..scenes as u64 {
            let seed = args.first_seed * 1000 + i;
            // Rendered once per scene, and only when not replaying.
            let mut view: Option<(Vec<TrueBall>, Mat)> = None;
            let mut det = Detector::default();
            let mut tracker = Tracker::new();
            score.new_scene();
            for k in 0..args.alt_frames {
                let rec = cache.frame(|| {
                    if view.is_none() {
                        let sc = AltScene::random(args.width, args.height, seed);
                        let truth = render_alt(&sc, &mut buf);
                        view = Some((truth.balls, bgr_mat(&buf, args.width, args.height)?));
                    }
                    let (truth, mat) = view.as_ref().context("alt scene missing")?;
                    let d = det.process(mat)?;
                    Ok(Rec {
                        layout: 0,
                        table: d.table.map(|t| t.corners),
                        balls: d.balls,
                        truth: truth.clone(),
                        pocketed: Vec::new(),
                        moving: false,
                    })
                })?;
                tracker.set_table(rec.table);
                let t_ns = (frame as f64 * 1e9 / FPS) as u64;
                let tracked = tracker.update(&rec.balls, t_ns);
                if k >= 4 {
                    score.add(
                        frame,
                        &TruthFrame {
                            balls: &rec.truth,
                            pocketed: &[],
                            moving: false,
                        },
                        &TrackedFrame {
                            balls: &tracked,
                            pocketed: tracker.pocketed(),
                            motion: false,
                        },
                    );
                }
                frame += 1;
            }
            frame += 1000;
        }
        Ok(score)
    }

    /// One frame as the tracker and the scoring see it: the detector's output and the truth.
    struct Rec {
        layout: u64,
        table: Option<[[f32; 2]; 4]>,
        balls: Vec<Ball>,
        truth: Vec<TrueBall>,
        pocketed: Vec<u8>,
        moving: bool,
    }

    /// `--sequence-cache`: the frames of an earlier run of the same command, replayed, or a
    /// file to record this run's frames into (written beside it, renamed once complete, so a
    /// run cut short leaves no truncated cache behind).
    pub(super) enum Cache {
        Off,
        Write(BufWriter<File>, PathBuf, PathBuf),
        Read(BufReader<File>),
    }

    impl Cache {
        pub(super) fn open(args: &Args, secs: f64) -> Result<Cache> {
            let Some(path) = &args.sequence_cache else {
                return Ok(Cache::Off);
            };
            let key = format!(
                "sequence-cache 1: {secs} s, {} seeds from {}, {}x{}, plain {}, {} alt scenes of {} frames, {:?}",
                args.seeds,
                args.first_seed,
                args.width,
                args.height,
                args.plain,
                args.frames,
                args.alt_frames,
                args.renderer
            );
            if path.exists() {
                let mut r = BufReader::new(File::open(path).with_context(|| {
                    format!("cannot open the sequence cache {}", path.display())
                })?);
                let len = get_u32(&mut r)? as usize;
                let mut k = vec![0u8; len.min(4096)];
                r.read_exact(&mut k)?;
                if k != key.as_bytes() {
                    bail!(
                        "the sequence cache {} was written by another command ({}); delete it or name another file",
                        path.display(),
                        String::from_utf8_lossy(&k)
                    );
                }
                println!("replaying the detections of {}", path.display());
                return Ok(Cache::Read(r));
            }
            let tmp = path.with_extension("partial");
            let mut w =
                BufWriter::new(File::create(&tmp).with_context(|| {
                    format!("cannot create the sequence cache {}", tmp.display())
                })?);
            w.write_all(&(key.len() as u32).to_le_bytes())?;
            w.write_all(key.as_bytes())?;
            Ok(Cache::Write(w, tmp, path.clone()))
        }

        fn replaying(&self) -> bool {
            matches!(self, Cache::Read(_))
        }

        /// The next frame: replayed, or made by `make` (and recorded).
        fn frame(&mut self, make: impl FnOnce() -> Result<Rec>) -> Result<Rec> {
            match self {
                Cache::Off => make(),
                Cache::Read(r) => {
                    read_rec(r).context("the sequence cache ends early or is damaged; delete it")
                }
                Cache::Write(w, _, _) => {
                    let rec = make()?;
                    write_rec(w, &rec)?;
                    Ok(rec)
                }
            }
        }

        /// Completes a cache being written.
        pub(super) fn finish(self) -> Result<()> {
            if let Cache::Write(mut w, tmp, path) = self {
                w.flush()?;
                drop(w);
                std::fs::rename(&tmp, &path).with_context(|| {
                    format!("cannot rename {} to {}", tmp.display(), path.display())
                })?;
            }
            Ok(())
        }
    }

    fn put_f32(w: &mut impl Write, v: f32) -> Result<()> {
        Ok(w.write_all(&v.to_le_bytes())?)
    }

    fn put_u32(w: &mut impl Write, v: u32) -> Result<()> {
        Ok(w.write_all(&v.to_le_bytes())?)
    }

    fn get_f32(r: &mut impl Read) -> Result<f32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
        Ok(f32::from_le_bytes(b))
    }

    fn get_u32(r: &mut impl Read) -> Result<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn kind_index(k: BallKind) -> u32 {
        BallKind::ALL.iter().position(|&a| a == k).unwrap_or(0) as u32
    }

    fn kind_at(i: u32) -> BallKind {
        BallKind::ALL
            .get(i as usize)
            .copied()
            .unwrap_or(BallKind::ALL[0])
    }

    fn write_rec(w: &mut impl Write, rec: &Rec) -> Result<()> {
        w.write_all(&rec.layout.to_le_bytes())?;
        put_u32(w, rec.table.is_some() as u32)?;
        for c in rec.table.unwrap_or_default().iter().flatten() {
            put_f32(w, *c)?;
        }
        put_u32(w, rec.balls.len() as u32)?;
        for b in &rec.balls {
            let f = &b.features;
            for v in [b.x, b.y, b.radius, b.score, b.fit_rms] {
                put_f32(w, v)?;
            }
            put_u32(w, kind_index(b.kind))?;
            for v in [
                f.white,
                f.dark,
                f.colour,
                f.ring_colour,
                f.ring_white,
                f.hue[0],
                f.hue[1],
                f.value,
                f.white_value,
            ] {
                put_f32(w, v)?;
            }
            put_u32(w, f.two_sided as u32)?;
            put_u32(w, f.n)?;
        }
        put_u32(w, rec.truth.len() as u32)?;
        for t in &rec.truth {
            for v in [t.x, t.y, t.radius] {
                put_f32(w, v)?;
            }
            put_u32(w, t.number)?;
            put_u32(w, kind_index(t.kind))?;
        }
        put_u32(w, rec.pocketed.len() as u32)?;
        w.write_all(&rec.pocketed)?;
        put_u32(w, rec.moving as u32)
    }

    fn read_rec(r: &mut impl Read) -> Result<Rec> {
        let mut l = [0u8; 8];
        r.read_exact(&mut l)?;
        let has_table = get_u32(r)? != 0;
        let mut corners = [[0.0f32; 2]; 4];
        for c in corners.iter_mut().flatten() {
            *c = get_f32(r)?;
        }
        let n = get_u32(r)?;
        let mut balls = Vec::with_capacity(n.min(1024) as usize);
        for _ in 0..n {
            let (x, y, radius, score, fit_rms) = (
                get_f32(r)?,
                get_f32(r)?,
                get_f32(r)?,
                get_f32(r)?,
                get_f32(r)?,
            );
            let kind = kind_at(get_u32(r)?);
            let mut f = billiards_vision_worker::model::KindFeatures {
                white: get_f32(r)?,
                dark: get_f32(r)?,
                colour: get_f32(r)?,
                ring_colour: get_f32(r)?,
                ring_white: get_f32(r)?,
                ..Default::default()
            };
            f.hue = [get_f32(r)?, get_f32(r)?];
            f.value = get_f32(r)?;
            f.white_value = get_f32(r)?;
            f.two_sided = get_u32(r)? != 0;
            f.n = get_u32(r)?;
            balls.push(Ball {
                x,
                y,
                radius,
                kind,
                score,
                fit_rms,
                features: f,
            });
        }
        let n = get_u32(r)?;
        let mut truth = Vec::with_capacity(n.min(1024) as usize);
        for _ in 0..n {
            truth.push(TrueBall {
                x: get_f32(r)?,
                y: get_f32(r)?,
                radius: get_f32(r)?,
                number: get_u32(r)?,
                kind: kind_at(get_u32(r)?),
            });
        }
        let n = get_u32(r)?;
        let mut pocketed = vec![0u8; n.min(1024) as usize];
        r.read_exact(&mut pocketed)?;
        let moving = get_u32(r)? != 0;
        Ok(Rec {
            layout: u64::from_le_bytes(l),
            table: has_table.then_some(corners),
            balls,
            truth,
            pocketed,
            moving,
        })
    }
}
