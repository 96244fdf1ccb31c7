//! The H.264 encoder and fMP4 muxer checked by an independent parser: the stream is written
//! to an .mp4 file exactly as a WebSocket client receives it (init segment, then one fragment
//! per frame) and decoded with OpenCV's videoio (FFmpeg's mov demuxer and H.264 decoder).

use std::io::Write;

use billiards_stream_worker::feed;
use billiards_stream_worker::frames::RawFrame;
use billiards_stream_worker::h264::encoder::{EncoderSettings, H264Encoder};
use billiards_stream_worker::h264::fmp4::{self, SampleTiming, TrackInfo};
use opencv::core::{Mat, Vec3b};
use opencv::prelude::*;
use opencv::videoio;

const W: u32 = 640;
const H: u32 = 360;
const FRAMES: usize = 45;

fn source(i: usize) -> RawFrame {
    RawFrame {
        frame_number: i as u64 + 1,
        capture_ns: i as u64 * 33_333_333,
        publish_ns: 0,
        width: W,
        height: H,
        stride: W * 3,
        data: feed::render(W, H, i),
    }
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = se / a.len() as f64;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

#[test]
fn the_fragmented_stream_decodes_with_ffmpeg_at_full_size_and_quality() {
    let mut enc = H264Encoder::new(EncoderSettings {
        bitrate_kbps: 2500,
        fps: 30.0,
        keyframe_frames: 15,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.mp4");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut keyframes = 0;
    for i in 0..FRAMES {
        let frame = source(i);
        let pic = enc
            .encode(&frame, i == 20)
            .unwrap()
            .expect("a picture per frame (frame skipping is off)");
        if i == 0 {
            assert!(pic.keyframe, "the stream starts with a keyframe");
            let (sps, pps) = pic.parameter_sets.clone().unwrap();
            assert_eq!(sps[1], 66, "baseline profile");
            assert!(sps[2] & 0x40 != 0, "constrained baseline (constraint_set1)");
            let track = TrackInfo {
                width: W as u16,
                height: H as u16,
                sps,
                pps,
            };
            file.write_all(&fmp4::init_segment(&track)).unwrap();
        }
        if i == 20 {
            assert!(pic.keyframe, "a forced keyframe is an IDR frame");
        }
        keyframes += usize::from(pic.keyframe);
        let timing = SampleTiming {
            decode_time: i as u64 * 3000,
            duration: 3000,
        };
        file.write_all(&fmp4::fragment(
            i as u32 + 1,
            timing,
            pic.keyframe,
            &pic.sample,
        ))
        .unwrap();
    }
    drop(file);
    // Frames 0, 15, 20 (forced), 35 (the period restarts at a forced IDR): at least 3.
    assert!((3..=5).contains(&keyframes), "{keyframes} keyframes");

    let mut cap =
        videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_FFMPEG).unwrap();
    assert!(cap.is_opened().unwrap(), "ffmpeg cannot open the stream");
    let mut decoded = 0;
    let mut worst = f64::INFINITY;
    let mut sum = 0.0;
    let mut img = Mat::default();
    while cap.read(&mut img).unwrap() {
        assert_eq!((img.cols(), img.rows()), (W as i32, H as i32));
        let src = source(decoded);
        let mut bgr = Vec::with_capacity(src.data.len());
        for y in 0..H as i32 {
            for x in 0..W as i32 {
                let p = img.at_2d::<Vec3b>(y, x).unwrap();
                bgr.extend_from_slice(&[p[0], p[1], p[2]]);
            }
        }
        let q = psnr(&bgr, &src.data);
        worst = worst.min(q);
        sum += q;
        decoded += 1;
    }
    assert_eq!(decoded, FRAMES, "every fragment decodes to one frame");
    eprintln!(
        "PSNR over {decoded} frames: mean {:.1} dB, worst {worst:.1} dB",
        sum / decoded as f64
    );
    assert!(worst >= 30.0, "worst PSNR {worst:.1} dB < 30 dB");
}
