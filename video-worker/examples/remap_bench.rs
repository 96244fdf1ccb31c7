//! Time of the undistortion remap per frame, as the video worker runs it (fixed-point
//! `CV_16SC2` maps, bilinear, into a buffer), at 720p and 1080p, with each kernel: OpenCV's
//! `remap` (through a matrix header over the buffer) and ours (AVX2, where the CPU has it).
//!
//! `cargo run -p billiards-video-worker --release --example remap_bench -- [FRAMES] [THREADS]
//! [cold]`
//! THREADS: OpenCV's thread count (default: OpenCV's own choice, one per core); our kernel
//! runs on 1 and on 2 threads. `cold`: before each frame, write 64 MiB elsewhere so that the
//! maps, the source and the destination come from memory, as in the video worker (the
//! times count the remap only).

use std::time::Instant;

use billiards_video_worker::calibration::{Calibration, Kernel, Remapper};
use billiards_video_worker::synthetic::{Scene, SceneParams};
use config::{CalibrationConfig, Framing, LensModel, SourceConfig};
use opencv::core::Mat;
use opencv::prelude::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let frames: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(300);
    if let Some(t) = args.get(2) {
        opencv::core::set_num_threads(t.parse()?)?;
    }
    let cold = args.get(3).is_some_and(|a| a == "cold");
    let mut flush = vec![0u8; if cold { 64 << 20 } else { 0 }];
    println!(
        "opencv threads: {}{}",
        opencv::core::get_num_threads()?,
        if cold { ", cold caches" } else { "" }
    );
    for (w, h) in [(1280u32, 720u32), (1920, 1080)] {
        let scene = Scene::new(SceneParams::new(w, h, 1))?;
        let mut src = Mat::default();
        scene.render_mat(&mut src)?;
        let cal = Calibration {
            camera_matrix: SourceConfig::synthetic_camera_matrix(w, h),
            dist_coeffs: vec![-0.25, 0.06, 0.0, 0.0, 0.0],
            image_width: w as i32,
            image_height: h as i32,
            model: Some(LensModel::Pinhole),
        };
        // Baseline: a plain copy of the frame, under the same machine load.
        let mut copy_dst = Mat::default();
        src.copy_to(&mut copy_dst)?;
        let cpu0 = shm_core::process_cpu_ns();
        let t = Instant::now();
        for _ in 0..frames {
            src.copy_to(&mut copy_dst)?;
        }
        println!(
            "{w}x{h} plain copy (baseline): {:.2} ms/frame, CPU {:.2} ms/frame",
            t.elapsed().as_secs_f64() * 1e3 / frames as f64,
            (shm_core::process_cpu_ns() - cpu0) as f64 / 1e6 / frames as f64
        );
        for framing in [Framing::Same, Framing::All] {
            for (kernel, threads) in [(Kernel::OpenCv, 0), (Kernel::Avx2, 1), (Kernel::Avx2, 2)] {
                if !kernel.available() {
                    println!("{w}x{h} framing {framing}: kernel {kernel}: not on this CPU");
                    continue;
                }
                let t = Instant::now();
                let mut remap = Remapper::undistort(
                    &cal,
                    &CalibrationConfig {
                        file: "bench".into(),
                        model: LensModel::Pinhole,
                        framing,
                    },
                )?;
                remap.set_kernel(kernel).map_err(anyhow::Error::msg)?;
                remap.set_threads(threads);
                // OpenCV's kernel runs on OpenCV's pool, ours on 1 or 2 threads.
                let label = match kernel {
                    Kernel::OpenCv => format!("{kernel}"),
                    Kernel::Avx2 => format!("{kernel} x{threads}"),
                };
                let maps_ms = t.elapsed().as_secs_f64() * 1e3;
                let mut dst = vec![0u8; (w * h * 3) as usize];
                for _ in 0..10 {
                    remap
                        .remap_into(&src, &mut dst)
                        .map_err(anyhow::Error::msg)?;
                }
                let mut times = Vec::with_capacity(frames);
                let mut cpu_ns = 0;
                for i in 0..frames {
                    if cold {
                        flush.fill(i as u8);
                    }
                    let cpu0 = shm_core::process_cpu_ns();
                    let f = Instant::now();
                    remap
                        .remap_into(&src, &mut dst)
                        .map_err(anyhow::Error::msg)?;
                    times.push(f.elapsed().as_secs_f64() * 1e3);
                    cpu_ns += shm_core::process_cpu_ns() - cpu0;
                }
                let wall = times.iter().sum::<f64>() / frames as f64;
                let cpu = cpu_ns as f64 / 1e6 / frames as f64;
                times.sort_by(f64::total_cmp);
                println!(
                    "{w}x{h} framing {framing} kernel {label}: maps {maps_ms:.0} ms once; remap \
                     mean {wall:.2} ms/frame (p50 {:.2}, p99 {:.2}), CPU {cpu:.2} ms/frame",
                    times[frames / 2],
                    times[frames * 99 / 100],
                );
            }
        }
    }
    Ok(())
}
