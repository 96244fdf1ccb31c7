//! Renders synthetic frames to PNG files, to look at the scene and its styles.
//!
//! `cargo run -p billiards-video-worker --release --example render_scene -- OUT_DIR [SEED] [SECONDS] [varied]`

use billiards_video_worker::synthetic::{Scene, SceneParams, SceneStyle};
use opencv::core::{Mat, Point, Scalar, Vector};
use opencv::{imgcodecs, imgproc};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or("."));
    let seed: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let seconds: f64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(0.0);
    let style = if args.get(4).map(String::as_str) == Some("varied") {
        SceneStyle::varied(seed)
    } else {
        SceneStyle::default()
    };
    println!("{style:?}");
    let t = std::time::Instant::now();
    let mut scene = Scene::new(SceneParams::new(1280, 720, seed).with_style(style))?;
    println!("scene built in {:?}", t.elapsed());
    let frames = (seconds * 30.0).round() as usize;
    for _ in 0..frames {
        scene.step(1.0 / 30.0);
    }
    let mut mat = Mat::default();
    let truth = scene.render_mat(&mut mat)?;
    imgcodecs::imwrite(
        &*out.join(format!("scene-{seed}.png")).to_string_lossy(),
        &mat,
        &Vector::new(),
    )?;
    for b in &truth.balls {
        imgproc::circle(
            &mut mat,
            Point::new(b.x.round() as i32, b.y.round() as i32),
            b.radius.round() as i32 + 2,
            Scalar::new(255.0, 0.0, 255.0, 0.0),
            1,
            imgproc::LINE_AA,
            0,
        )?;
    }
    imgcodecs::imwrite(
        &*out
            .join(format!("scene-{seed}-truth.png"))
            .to_string_lossy(),
        &mat,
        &Vector::new(),
    )?;
    Ok(())
}
