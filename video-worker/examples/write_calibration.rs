//! Writes a calibration file for the synthetic source's lens matrix (see
//! `config::SourceConfig::synthetic_camera_matrix`) with the given coefficients, for
//! benchmarks and manual runs.
//!
//! `cargo run -p billiards-video-worker --example write_calibration -- OUT.yaml WIDTH HEIGHT K1 K2 P1 P2 [K3]`

use billiards_video_worker::calibration::Calibration;
use config::{LensModel, SourceConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 7,
        "usage: write_calibration OUT.yaml WIDTH HEIGHT K1 K2 P1 P2 [K3]"
    );
    let (w, h): (u32, u32) = (args[1].parse()?, args[2].parse()?);
    let dist = args[3..]
        .iter()
        .map(|s| s.parse::<f64>())
        .collect::<Result<Vec<_>, _>>()?;
    let cal = Calibration {
        camera_matrix: SourceConfig::synthetic_camera_matrix(w, h),
        dist_coeffs: dist,
        image_width: w as i32,
        image_height: h as i32,
        model: Some(LensModel::Pinhole),
    };
    cal.save(std::path::Path::new(&args[0]), &[])
        .map_err(anyhow::Error::msg)?;
    println!("{}", args[0]);
    Ok(())
}
