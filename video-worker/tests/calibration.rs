//! Process tests of lens calibration: the real worker undistorting a synthetic source seen
//! through a known lens, refusing unusable calibration files, and the real `calibrate`
//! command recovering a known camera from chessboard photos rendered here.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use billiards_video_worker::synthetic::{Scene, SceneParams};
use common::*;
use opencv::core::{
    FileStorage, FileStorage_Mode, Mat, Point, Point2f, Point3f, Scalar, TermCriteria,
    TermCriteria_Type, Vector, CV_32FC2, CV_64F, CV_8UC1,
};
use opencv::prelude::*;
use opencv::{calib3d, imgcodecs, imgproc};

const LONG: Duration = Duration::from_secs(30);

/// The synthetic source's lens: focal length = width, principal point at the centre.
const DIST: [f64; 4] = [-0.25, 0.06, 0.0, 0.0];

fn mat(rows: i32, cols: i32, v: &[f64]) -> Mat {
    let mut m = Mat::new_rows_cols_with_default(rows, cols, CV_64F, Scalar::all(0.0)).unwrap();
    for (i, x) in v.iter().enumerate() {
        *m.at_2d_mut::<f64>(i as i32 / cols, i as i32 % cols)
            .unwrap() = *x;
    }
    m
}

/// Writes a calibration file with OpenCV's FileStorage, the way any OpenCV tool would.
fn write_calibration(path: &Path, k: &[f64; 9], d: &[f64], w: i32, h: i32) {
    let mut fs =
        FileStorage::new(path.to_str().unwrap(), FileStorage_Mode::WRITE as i32, "").unwrap();
    opencv::core::write_mat(&mut fs, "camera_matrix", &mat(3, 3, k)).unwrap();
    opencv::core::write_mat(&mut fs, "dist_coeffs", &mat(1, d.len() as i32, d)).unwrap();
    opencv::core::write_i32(&mut fs, "image_width", w).unwrap();
    opencv::core::write_i32(&mut fs, "image_height", h).unwrap();
    fs.release().unwrap();
}

fn synthetic_k(w: u32, h: u32) -> [f64; 9] {
    let f = w as f64;
    [
        f,
        0.0,
        (w as f64 - 1.0) / 2.0,
        0.0,
        f,
        (h as f64 - 1.0) / 2.0,
        0.0,
        0.0,
        1.0,
    ]
}

/// Frame 1 of a worker run with `source` lines (the worker runs at 2 fps, so the reader
/// attached before it starts sees frame 1).
fn first_frame(ws: &Workspace, w: u32, h: u32, source: &str) -> Vec<u8> {
    let cfg = ws.config(&format!("width = {w}\nheight = {h}\nfps = 2"), source);
    let _seg = ws.create_segment(w, h, 3);
    let mut reader = ws.attach(Duration::from_secs(1));
    let worker = ws.spawn(&cfg, &["--supervised"]);
    let mut buf = Vec::new();
    let end = Instant::now() + LONG;
    let meta = loop {
        assert!(Instant::now() < end, "no frames: {}", worker.stderr());
        reader.wait_next(Duration::from_millis(200)).unwrap();
        if let Some(m) = reader.read_latest(&mut buf).unwrap() {
            break m;
        }
    };
    assert_eq!(meta.frame_number, 1, "{}", worker.stderr());
    buf
}

/// Over the central 80% of two BGR frames: the mean absolute difference, and the share of
/// pixels that differ by more than 40 in some channel (where an edge or a ball moved).
fn central_diff(a: &[u8], b: &[u8], w: u32, h: u32) -> (f64, f64) {
    let (mut sum, mut n, mut moved) = (0u64, 0u64, 0u64);
    for y in h / 10..h * 9 / 10 {
        for x in w / 10..w * 9 / 10 {
            let mut worst = 0;
            for c in 0..3 {
                let i = ((y * w + x) * 3 + c) as usize;
                let d = (a[i] as i64 - b[i] as i64).unsigned_abs();
                sum += d;
                worst = worst.max(d);
            }
            moved += u64::from(worst > 40);
            n += 1;
        }
    }
    (sum as f64 / (3 * n) as f64, moved as f64 / n as f64)
}

#[test]
fn a_distorted_synthetic_source_is_corrected_by_its_calibration() {
    let (w, h) = (640u32, 360u32);
    let scene = Scene::new(SceneParams::new(w, h, 3)).unwrap();
    let mut ideal = vec![0u8; scene.frame_len()];
    scene.render_into(&mut ideal).unwrap();
    let dist = format!("kind = \"synthetic\"\nseed = 3\ndistortion = {DIST:?}\n");

    let ws = Workspace::new("distorted");
    let distorted = first_frame(&ws, w, h, &dist);

    let ws = Workspace::new("undistorted");
    let cal = ws.path("cam.yaml");
    write_calibration(&cal, &synthetic_k(w, h), &DIST, w as i32, h as i32);
    let corrected = first_frame(
        &ws,
        w,
        h,
        &format!(
            "{dist}\n[video.calibration]\nfile = \"{}\"\nmodel = \"pinhole\"\nframing = \"same\"\n",
            cal.display()
        ),
    );

    let (before, moved_before) = central_diff(&distorted, &ideal, w, h);
    let (after, moved_after) = central_diff(&corrected, &ideal, w, h);
    eprintln!(
        "difference from the ideal frame: distorted mean {before:.2}, {:.2}% of pixels moved; \
         corrected mean {after:.2}, {:.2}% moved",
        moved_before * 100.0,
        moved_after * 100.0
    );
    assert!(
        after < 2.0,
        "the corrected frame differs from the ideal by {after:.2}"
    );
    assert!(
        before > 2.0 * after,
        "the lens should change the picture: distorted {before:.2} vs corrected {after:.2}"
    );
    assert!(
        moved_after < 0.002 && moved_before > 10.0 * moved_after.max(0.0005),
        "edges and balls should be back in place: {:.3}% of pixels moved before correction, \
         {:.3}% after",
        moved_before * 100.0,
        moved_after * 100.0
    );
}

#[test]
fn a_calibration_for_another_size_is_refused_naming_both_sizes() {
    let ws = Workspace::new("calsize");
    let cal = ws.path("cam.yaml");
    write_calibration(&cal, &synthetic_k(1280, 720), &DIST, 1280, 720);
    let cfg = ws.config(
        "width = 320\nheight = 180",
        &format!(
            "kind = \"synthetic\"\n\n[video.calibration]\nfile = \"{}\"\n",
            cal.display()
        ),
    );
    let _seg = ws.guard_segment();
    let mut worker = ws.spawn(&cfg, &[]);
    let status = worker.wait_timeout(LONG).expect("exits");
    let err = worker.stderr();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("video.calibration.file"), "{err}");
    assert!(err.contains("1280x720") && err.contains("320x180"), "{err}");
    assert!(err.contains("exit-reason: "), "{err}");
}

#[test]
fn a_missing_calibration_file_names_the_file_and_the_key() {
    let ws = Workspace::new("calmissing");
    let missing = ws.path("nope.yaml");
    let cfg = ws.config(
        "width = 320\nheight = 180",
        &format!(
            "kind = \"synthetic\"\n\n[video.calibration]\nfile = \"{}\"\n",
            missing.display()
        ),
    );
    let _seg = ws.guard_segment();
    let mut worker = ws.spawn(&cfg, &[]);
    let status = worker.wait_timeout(LONG).expect("exits");
    let err = worker.stderr();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "video.calibration.file = \"{}\": cannot read the calibration file: no such file",
            missing.display()
        )),
        "{err}"
    );
}

// ---- calibrate ----

const IMG_W: i32 = 640;
const IMG_H: i32 = 480;
const TRUE_K: [f64; 9] = [600.0, 0.0, 318.0, 0.0, 596.0, 242.0, 0.0, 0.0, 1.0];
const TRUE_D: [f64; 5] = [-0.22, 0.07, 0.0008, -0.0006, 0.0];
const SQUARE: f64 = 30.0;
/// Inner corners.
const COLS: i32 = 9;
const ROWS: i32 = 6;

/// Projects board-plane points (mm, centred on the board) through the ideal camera.
fn project(points: &[(f64, f64)], rvec: [f64; 3], tvec: [f64; 3]) -> Vec<Point2f> {
    let obj: Vector<Point3f> = points
        .iter()
        .map(|&(x, y)| Point3f::new(x as f32, y as f32, 0.0))
        .collect();
    let mut out = Vector::<Point2f>::new();
    let mut jac = Mat::default();
    calib3d::project_points(
        &obj,
        &mat(3, 1, &rvec),
        &mat(3, 1, &tvec),
        &mat(3, 3, &TRUE_K),
        &Mat::default(),
        &mut out,
        &mut jac,
        0.0,
    )
    .unwrap();
    out.to_vec()
}

fn fill_quad(img: &mut Mat, q: &[Point2f], value: f64) {
    // 4 fractional bits: sub-pixel corners, anti-aliased edges.
    let pts: Vector<Point> = q
        .iter()
        .map(|p| Point::new((p.x * 16.0).round() as i32, (p.y * 16.0).round() as i32))
        .collect();
    imgproc::fill_convex_poly(img, &pts, Scalar::all(value), imgproc::LINE_AA, 4).unwrap();
}

/// The lens a test photo is taken through.
#[derive(Clone, Copy)]
enum Lens {
    /// `TRUE_D`, OpenCV's pinhole model.
    Pinhole,
    /// `TRUE_FISHEYE_D`, OpenCV's `fisheye::` model.
    Fisheye,
}

/// Fisheye coefficients k1..k4 of a wide lens.
const TRUE_FISHEYE_D: [f64; 4] = [0.08, -0.03, 0.012, -0.004];

/// An ideal photo of the board at one pose, then passed through the true pinhole lens.
fn board_photo(rvec: [f64; 3], tvec: [f64; 3]) -> Mat {
    board_photo_through(rvec, tvec, Lens::Pinhole)
}

/// An ideal photo of the board at one pose, then passed through `lens`: each distorted pixel
/// samples the ideal photo where the lens maps it from.
fn board_photo_through(rvec: [f64; 3], tvec: [f64; 3], lens: Lens) -> Mat {
    let mut ideal =
        Mat::new_rows_cols_with_default(IMG_H, IMG_W, CV_8UC1, Scalar::all(110.0)).unwrap();
    let (cx, cy) = (
        (COLS - 1) as f64 * SQUARE / 2.0,
        (ROWS - 1) as f64 * SQUARE / 2.0,
    );
    let quad = |x0: f64, y0: f64, x1: f64, y1: f64| {
        project(
            &[
                (x0 - cx, y0 - cy),
                (x1 - cx, y0 - cy),
                (x1 - cx, y1 - cy),
                (x0 - cx, y1 - cy),
            ],
            rvec,
            tvec,
        )
    };
    // A white margin of one square around the board, as printed boards have.
    let s = SQUARE;
    let margin = quad(-2.0 * s, -2.0 * s, COLS as f64 * s + s, ROWS as f64 * s + s);
    fill_quad(&mut ideal, &margin, 255.0);
    for r in -1..ROWS {
        for c in -1..COLS {
            if (r + c).rem_euclid(2) == 0 {
                let (x0, y0) = (c as f64 * s, r as f64 * s);
                fill_quad(&mut ideal, &quad(x0, y0, x0 + s, y0 + s), 0.0);
            }
        }
    }
    let mut pixels = Vector::<Point2f>::new();
    for y in 0..IMG_H {
        for x in 0..IMG_W {
            pixels.push(Point2f::new(x as f32, y as f32));
        }
    }
    let mut from = Vector::<Point2f>::new();
    let criteria = TermCriteria::new(
        TermCriteria_Type::COUNT as i32 + TermCriteria_Type::EPS as i32,
        50,
        1e-7,
    )
    .unwrap();
    match lens {
        Lens::Pinhole => calib3d::undistort_points_iter(
            &pixels,
            &mut from,
            &mat(3, 3, &TRUE_K),
            &mat(1, 5, &TRUE_D),
            &Mat::default(),
            &mat(3, 3, &TRUE_K),
            criteria,
        ),
        // cv::fisheye::undistortPoints
        Lens::Fisheye => calib3d::fisheye_undistort_points(
            &pixels,
            &mut from,
            &mat(3, 3, &TRUE_K),
            &mat(1, 4, &TRUE_FISHEYE_D),
            &Mat::default(),
            &mat(3, 3, &TRUE_K),
            criteria,
        ),
    }
    .unwrap();
    let map = Mat::from_exact_iter(from.iter())
        .unwrap()
        .reshape(2, IMG_H)
        .unwrap()
        .try_clone()
        .unwrap();
    assert_eq!(map.typ(), CV_32FC2);
    let mut photo = Mat::default();
    imgproc::remap(
        &ideal,
        &mut photo,
        &map,
        &Mat::default(),
        imgproc::INTER_LINEAR,
        opencv::core::BORDER_CONSTANT,
        Scalar::all(110.0),
    )
    .unwrap();
    photo
}

const POSES: [([f64; 3], [f64; 3]); 10] = [
    ([0.0, 0.0, 0.0], [0.0, 0.0, 650.0]),
    ([0.35, 0.0, 0.05], [-60.0, -40.0, 700.0]),
    ([-0.35, 0.1, -0.05], [60.0, 40.0, 700.0]),
    ([0.0, 0.4, 0.1], [80.0, -50.0, 720.0]),
    ([0.1, -0.4, -0.1], [-80.0, 50.0, 720.0]),
    ([0.3, 0.3, 0.2], [100.0, 60.0, 800.0]),
    ([-0.3, -0.3, -0.2], [-100.0, -60.0, 800.0]),
    ([0.25, -0.25, 0.3], [90.0, -70.0, 750.0]),
    ([-0.2, 0.35, -0.3], [-90.0, 70.0, 750.0]),
    ([0.0, 0.0, 0.5], [0.0, 0.0, 600.0]),
];

fn calibrate(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("calibrate")
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run calibrate")
}

#[test]
fn calibrate_recovers_a_known_camera_from_rendered_chessboards() {
    recovers_known_camera(Lens::Pinhole);
}

#[test]
fn calibrate_recovers_a_known_fisheye_camera_from_rendered_chessboards() {
    recovers_known_camera(Lens::Fisheye);
}

/// Renders the board at every pose through `lens`, runs `calibrate` with the matching
/// `--model`, and checks the camera it writes: the true focal lengths and centre within 1%,
/// the model's number of coefficients, and the image size.
fn recovers_known_camera(lens: Lens) {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for (i, (r, t)) in POSES.iter().enumerate() {
        let photo = board_photo_through(*r, *t, lens);
        let name = images.join(format!("board{i:02}.png"));
        imgcodecs::imwrite(name.to_str().unwrap(), &photo, &Vector::new()).unwrap();
    }
    // A photo without the board counts as read but not used.
    let blank = Mat::new_rows_cols_with_default(IMG_H, IMG_W, CV_8UC1, Scalar::all(90.0)).unwrap();
    imgcodecs::imwrite(
        images.join("empty.png").to_str().unwrap(),
        &blank,
        &Vector::new(),
    )
    .unwrap();
    let out = dir.path().join("cam.yaml");
    let (model, coefficients) = match lens {
        Lens::Pinhole => ("pinhole", 5),
        Lens::Fisheye => ("fisheye", 4),
    };
    let run = calibrate(&[
        "--images",
        images.to_str().unwrap(),
        "--board",
        &format!("{COLS}x{ROWS}"),
        "--square-mm",
        &SQUARE.to_string(),
        "--model",
        model,
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    assert!(stdout.contains("images with a board: 10 of 11"), "{stdout}");
    assert!(stdout.contains("RMS reprojection error: "), "{stdout}");

    // Read the file as any OpenCV program would.
    let fs = FileStorage::new(out.to_str().unwrap(), FileStorage_Mode::READ as i32, "").unwrap();
    let k = fs.get("camera_matrix").unwrap().mat().unwrap();
    let d = fs.get("dist_coeffs").unwrap().mat().unwrap();
    assert_eq!(d.total(), coefficients, "{model}: {stdout}");
    assert_eq!(fs.get("image_width").unwrap().to_i32().unwrap(), IMG_W);
    assert_eq!(fs.get("image_height").unwrap().to_i32().unwrap(), IMG_H);
    let at = |r, c| *k.at_2d::<f64>(r, c).unwrap();
    for (name, got, want) in [
        ("fx", at(0, 0), TRUE_K[0]),
        ("fy", at(1, 1), TRUE_K[4]),
        ("cx", at(0, 2), TRUE_K[2]),
        ("cy", at(1, 2), TRUE_K[5]),
    ] {
        let rel = (got - want).abs() / want;
        assert!(
            rel < 0.01,
            "{name} = {got:.3}, true {want} ({:.2}% off)\n{stdout}",
            rel * 100.0
        );
    }
}

#[test]
fn calibrate_refuses_too_few_boards() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for (i, (r, t)) in POSES.iter().take(2).enumerate() {
        let name = images.join(format!("board{i}.png"));
        imgcodecs::imwrite(name.to_str().unwrap(), &board_photo(*r, *t), &Vector::new()).unwrap();
    }
    let out = dir.path().join("cam.yaml");
    let run = calibrate(&[
        "--images",
        images.to_str().unwrap(),
        "--board",
        "9x6",
        "--square-mm",
        "30",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("only 2 of 2 images show the 9x6 board") && stderr.contains("at least 3"),
        "{stderr}"
    );
    assert!(!out.exists());

    let run = calibrate(&[
        "--images",
        "x",
        "--board",
        "nine",
        "--square-mm",
        "30",
        "--out",
        "o.yaml",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("COLSxROWS"));
}
