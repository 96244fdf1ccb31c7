//! The ball stage on frames of the second renderer where it used to fail (issue #16, third
//! round): a rack whose middle pockets set the ball radius, balls smeared by their motion, and
//! a lamp's ring on a blue cloth. Each frame is named by its scene seed, the number in the
//! `vision-eval --condition NAME --renderer alt --verbose` lines; the full figures come from
//! `vision-eval --condition all`.

use billiards_vision_worker::detect::Detector;
use billiards_vision_worker::eval::Score;
use billiards_vision_worker::scene::{conditions as alt, render_alt, AltScene};
use opencv::core::{Mat, Vec3b};
use video_worker::synthetic::conditions::Condition;

const W: u32 = 1280;
const H: u32 = 720;

/// The detector's score on alt scene `seed` with condition `cond` drawn on it.
fn score(cond: Condition, seed: u64) -> Score {
    let sc = alt::scene_for(cond, AltScene::random(W, H, seed));
    let mut px = Vec::new();
    let mut t = render_alt(&sc, &mut px);
    alt::apply(cond, &mut px, W as usize, H as usize, &mut t, seed);
    let mat = Mat::new_rows_cols_with_bytes::<Vec3b>(H as i32, W as i32, &px)
        .expect("mat")
        .clone_pointee();
    let d = Detector::default().detect(&mat).expect("detect");
    let mut s = Score::default();
    s.add(
        &t.balls,
        Some(&t.corners),
        &d.balls,
        d.table.as_ref().map(|t| &t.corners),
    );
    s
}

#[test]
fn pockets_do_not_set_the_ball_radius_of_a_rack() {
    // Small balls, one of them alone: the two round middle pockets used to outvote it, and the
    // radius they gave lost the rack (3 of 12 and 3 of 16 balls).
    for seed in [1110, 1144] {
        let s = score(Condition::Rack, seed);
        assert!(
            s.recall() >= 0.8 && s.precision() >= 0.9,
            "rack {seed}: recall {:.3}, precision {:.3}",
            s.recall(),
            s.precision()
        );
    }
}

#[test]
fn smeared_balls_are_found() {
    // Each of these frames lost one smeared ball.
    let (mut truths, mut matched, mut detections) = (0, 0, 0);
    for seed in [1002, 1039, 1098, 1099] {
        let s = score(Condition::MotionBlur, seed);
        truths += s.truths;
        matched += s.matched;
        detections += s.detections;
    }
    assert!(matched + 1 >= truths, "found {matched} of {truths} balls");
    assert_eq!(
        detections, matched,
        "a smear was taken for more than its ball"
    );
}

#[test]
fn a_lamp_ring_on_blue_cloth_is_not_balls() {
    // The ring's white clips the blue channel first; it used to give 7 balls.
    let s = score(Condition::Glare, 1072);
    assert_eq!(
        s.detections,
        s.matched,
        "{} extra balls",
        s.detections - s.matched
    );
    assert!(s.recall() >= 0.9, "recall {:.3}", s.recall());
}

#[test]
fn a_pocket_jaw_is_not_a_cue() {
    use video_worker::synthetic::{Scene, SceneParams, SceneStyle};
    // Official scene 9, tilted: the jaw of the near right corner pocket is a short thin piece
    // that comes in over the rim, and was reported as a cue in 12 of its 15 frames.
    let (cond, seed) = (Condition::Tilt, 9u64);
    let style = cond.style(SceneStyle::varied(seed), seed);
    let mut scene = Scene::new(SceneParams::new(W, H, seed).with_style(style)).expect("scene");
    let mut det = Detector::default();
    let mut phantoms = 0;
    for i in 0..6u64 {
        scene.step(0.4);
        let mut px = vec![0u8; scene.frame_len()];
        let mut gt = scene.render_into(&mut px).expect("render");
        assert!(cond
            .apply(&mut px, W, H, &mut gt, seed * 100_003 + i)
            .is_none());
        let mat = Mat::new_rows_cols_with_bytes::<Vec3b>(H as i32, W as i32, &px)
            .expect("mat")
            .clone_pointee();
        phantoms += usize::from(det.detect(&mat).expect("detect").cue.is_some());
    }
    assert_eq!(phantoms, 0, "cues reported on a table without one");
}
