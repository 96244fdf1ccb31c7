//! Writes an MJPG AVI of the synthetic table, for measuring the file source on realistic
//! content.
//!
//! `cargo run -p billiards-video-worker --release --example make_video -- OUT.avi WIDTH HEIGHT FPS SECONDS`

use anyhow::{ensure, Context};
use billiards_video_worker::synthetic::{Scene, SceneParams};
use opencv::core::{Mat, Size};
use opencv::prelude::*;
use opencv::videoio;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    ensure!(
        args.len() == 6,
        "usage: make_video OUT.avi WIDTH HEIGHT FPS SECONDS"
    );
    let out = &args[1];
    let (w, h): (u32, u32) = (args[2].parse()?, args[3].parse()?);
    let fps: u32 = args[4].parse()?;
    let seconds: f64 = args[5].parse()?;
    let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G')?;
    let mut writer =
        videoio::VideoWriter::new(out, fourcc, fps as f64, Size::new(w as i32, h as i32), true)?;
    ensure!(writer.is_opened()?, "cannot write {out}");
    let mut scene = Scene::new(SceneParams::new(w, h, 1)).context("scene")?;
    let mut frame = Mat::default();
    let frames = (seconds * fps as f64).round() as usize;
    for _ in 0..frames {
        scene.render_mat(&mut frame)?;
        writer.write(&frame)?;
        scene.step(1.0 / fps as f64);
    }
    writer.release()?;
    println!("wrote {frames} frames of {w}x{h} @ {fps} fps to {out}");
    Ok(())
}
