//! Detection against ground truth on synthetic frames: the video worker's renderer (clean,
//! noisy, dim, tilted, racked) and this crate's independent "alt" renderer. The full-scale
//! figures come from `vision-eval`; these are quick checks of the same scoring.

use billiards_vision_worker::detect::Detector;
use billiards_vision_worker::eval::Score;
use billiards_vision_worker::model::BallKind;
use billiards_vision_worker::scene::{render_alt, AltScene, TrueBall};
use opencv::core::{Mat, Vec3b};
use video_worker::synthetic::{self, cloth, Layout, Scene, SceneParams, SceneStyle};

const W: u32 = 1280;
const H: u32 = 720;

fn kind(k: synthetic::BallKind) -> BallKind {
    match k {
        synthetic::BallKind::Cue => BallKind::Cue,
        synthetic::BallKind::Eight => BallKind::Eight,
        synthetic::BallKind::Solid => BallKind::Solid,
        synthetic::BallKind::Stripe => BallKind::Stripe,
    }
}

/// Renders `frames` frames of an official scene (stepping the game between them), applies
/// `post` to each frame, and scores the detector on them.
fn score_official(style: SceneStyle, seed: u64, frames: u32, post: impl Fn(&mut [u8])) -> Score {
    let mut scene = Scene::new(SceneParams::new(W, H, seed).with_style(style)).expect("scene");
    let mut buf = vec![0u8; scene.frame_len()];
    let mut det = Detector::default();
    let mut score = Score::default();
    for _ in 0..frames {
        scene.step(0.5);
        let gt = scene.render_into(&mut buf).expect("render");
        post(&mut buf);
        let truth: Vec<TrueBall> = gt
            .balls
            .iter()
            .map(|b| TrueBall {
                x: b.x,
                y: b.y,
                radius: b.radius,
                number: b.number as u32,
                kind: kind(b.kind),
            })
            .collect();
        let mat = Mat::new_rows_cols_with_bytes::<Vec3b>(H as i32, W as i32, &buf).expect("mat");
        let d = det.detect(&mat).expect("detect");
        score.add(
            &truth,
            Some(&gt.table_corners),
            &d.balls,
            d.table.as_ref().map(|t| &t.corners),
        );
    }
    score
}

fn assert_good(name: &str, s: &Score, recall: f64, kind_acc: f64) {
    let line = format!(
        "{name}: recall {:.3} precision {:.3} centre error {:.3} px kind {:.3} tables {}/{}",
        s.recall(),
        s.precision(),
        s.mean_centre_error(),
        s.kind_accuracy(),
        s.tables_found,
        s.frames
    );
    println!("{line}");
    assert_eq!(s.tables_found, s.frames, "{line}");
    assert!(s.recall() >= recall, "{line}");
    assert!(s.precision() >= 0.97, "{line}");
    assert!(s.mean_centre_error() <= 1.0, "{line}");
    assert!(s.kind_accuracy() >= kind_acc, "{line}");
}

#[test]
fn clean_scattered_table() {
    let style = SceneStyle {
        layout: Layout::Scattered,
        ..SceneStyle::plain()
    }
    .still();
    assert_good("clean", &score_official(style, 11, 2, |_| {}), 0.97, 0.9);
}

#[test]
fn racked_table() {
    // The rack: 15 touching balls, three of them with no cloth around them.
    let s = score_official(SceneStyle::default().still(), 12, 1, |_| {});
    assert_good("rack", &s, 0.93, 0.85);
}

#[test]
fn noisy_blue_tilted_table() {
    let style = SceneStyle {
        cloth: cloth::BLUE,
        noise: 12.0,
        tilt_deg: 8.0,
        tilt_azimuth_deg: 30.0,
        roll_deg: 2.0,
        lighting: 0.6,
        layout: Layout::Scattered,
        ..SceneStyle::default()
    };
    assert_good("noisy", &score_official(style, 13, 2, |_| {}), 0.9, 0.85);
}

#[test]
fn dim_teal_table() {
    // A third of the light, with the sensor noise of a camera pushing its gain.
    let style = SceneStyle {
        cloth: cloth::TEAL,
        noise: 3.0,
        lighting: 0.5,
        layout: Layout::Scattered,
        ..SceneStyle::default()
    };
    let dim = |f: &mut [u8]| {
        for p in f.iter_mut() {
            *p = (*p as f32 * 0.35).round() as u8;
        }
    };
    assert_good("dim", &score_official(style, 14, 2, dim), 0.9, 0.85);
}

#[test]
fn alt_renderer_scenes() {
    // Another renderer: perspective by homography, felt texture, lamp pools, Phong-shaded
    // balls with rotated bands, soft shadows; a third of its scenes are dim or noisy.
    let mut det = Detector::default();
    let mut score = Score::default();
    let mut buf = Vec::new();
    let (mut dim, mut noisy) = (0, 0);
    for seed in 0..8u64 {
        let sc = AltScene::random(W, H, 4000 + seed);
        dim += usize::from(sc.gain < 0.5);
        noisy += usize::from(sc.noise_sigma > 6.0);
        let truth = render_alt(&sc, &mut buf);
        let mat = Mat::new_rows_cols_with_bytes::<Vec3b>(H as i32, W as i32, &buf).expect("mat");
        let d = det.detect(&mat).expect("detect");
        score.add(
            &truth.balls,
            Some(&truth.corners),
            &d.balls,
            d.table.as_ref().map(|t| &t.corners),
        );
    }
    println!("alt scenes: {dim} dim, {noisy} noisy");
    assert_good("alt", &score, 0.9, 0.85);
}

#[test]
fn empty_and_odd_frames_do_not_panic() {
    let mut det = Detector::default();
    // A uniform grey frame: no table, no balls, no error.
    let grey =
        Mat::new_rows_cols_with_default(H as i32, W as i32, opencv::core::CV_8UC3, 128.into())
            .unwrap();
    let d = det.detect(&grey).unwrap();
    assert!(d.balls.is_empty());
    // Pure noise.
    let mut noise = vec![0u8; (W * H * 3) as usize];
    let mut x = 12345u32;
    for p in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *p = x as u8;
    }
    let m = Mat::new_rows_cols_with_bytes::<Vec3b>(H as i32, W as i32, &noise).unwrap();
    let d = det.detect(&m).unwrap();
    assert!(d.balls.len() < 5, "{} balls in noise", d.balls.len());
    // Wrong type and tiny frames are errors, not panics.
    let gray = Mat::new_rows_cols_with_default(100, 100, opencv::core::CV_8UC1, 0.into()).unwrap();
    assert!(det.detect(&gray).is_err());
    let tiny = Mat::new_rows_cols_with_default(10, 10, opencv::core::CV_8UC3, 0.into()).unwrap();
    assert!(det.detect(&tiny).is_err());
    // Small but valid frames work.
    let small = Mat::new_rows_cols_with_default(90, 160, opencv::core::CV_8UC3, 60.into()).unwrap();
    assert!(det.detect(&small).is_ok());
}

#[test]
fn moved_table_is_redetected_after_a_few_frames() {
    let style = SceneStyle {
        layout: Layout::Scattered,
        ..SceneStyle::plain()
    }
    .still();
    let scene = Scene::new(SceneParams::new(W, H, 21).with_style(style)).expect("scene");
    let mut buf = vec![0u8; scene.frame_len()];
    scene.render_into(&mut buf).expect("render");
    // The same view shifted 120 px right and 40 px down (a bumped camera).
    let (dx, dy) = (120usize, 40usize);
    let mut moved = vec![0u8; buf.len()];
    let row = W as usize * 3;
    for y in dy..H as usize {
        moved[y * row + dx * 3..(y + 1) * row]
            .copy_from_slice(&buf[(y - dy) * row..(y - dy + 1) * row - dx * 3]);
    }
    let mut det = Detector::default();
    let a = Mat::new_rows_cols_with_bytes::<Vec3b>(H as i32, W as i32, &buf).unwrap();
    let first = det.process(&a).unwrap();
    assert!(det.last_table_redetected);
    for _ in 0..40 {
        let again = det.process(&a).unwrap();
        assert!(!det.last_table_redetected, "a fitting table is held");
        assert_eq!(first.table, again.table);
    }
    let b = Mat::new_rows_cols_with_bytes::<Vec3b>(H as i32, W as i32, &moved).unwrap();
    // One bad frame changes nothing.
    let once = det.process(&b).unwrap();
    assert!(!det.last_table_redetected, "one bad frame changes nothing");
    assert_eq!(once.table, first.table);
    assert_eq!(det.table_misfits(), 1);
    let again = det.process(&a).unwrap();
    assert_eq!(again.table, first.table);
    assert_eq!(det.table_misfits(), 0, "a fitting frame resets the count");
    // A view that stays moved is found again after a few frames.
    let mut shifted = None;
    for _ in 0..10 {
        let d = det.process(&b).unwrap();
        if det.last_table_redetected {
            shifted = Some(d);
            break;
        }
    }
    let shifted = shifted.expect("a moved table is found again within 10 frames");
    let (t0, t1) = (first.table.unwrap(), shifted.table.unwrap());
    let cx = |t: &billiards_vision_worker::model::Table| {
        t.corners.iter().map(|c| c[0]).sum::<f32>() / 4.0
    };
    let cy = |t: &billiards_vision_worker::model::Table| {
        t.corners.iter().map(|c| c[1]).sum::<f32>() / 4.0
    };
    assert!(
        (cx(&t1) - cx(&t0) - dx as f32).abs() < 15.0,
        "{t0:?} -> {t1:?}"
    );
    assert!(
        (cy(&t1) - cy(&t0) - dy as f32).abs() < 15.0,
        "{t0:?} -> {t1:?}"
    );
    assert!(shifted.balls.len() >= 12, "{} balls", shifted.balls.len());
}
