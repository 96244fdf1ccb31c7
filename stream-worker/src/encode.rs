//! JPEG encoding (OpenCV imgcodecs) and the detections overlay (OpenCV imgproc).
//!
//! These are blocking, CPU-heavy calls: they run on the encoder threads (`pool`), never on the async
//! reactor. The overlay is drawn on a copy of the frame (the original is shared by every
//! variant), into a scratch buffer that the caller keeps between frames.

use opencv::core::{Mat, Point, Rect, Scalar, ToInputOutputArray, Vec3b, Vector};
use opencv::{imgcodecs, imgproc};

use crate::detections::{BallKind, Detections};
use crate::frames::RawFrame;

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The frame's geometry does not match its data.
    #[error("frame {frame_number} has inconsistent geometry ({width}x{height}, stride {stride}, {len} bytes)")]
    BadFrame {
        /// The frame.
        frame_number: u64,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Stride.
        stride: u32,
        /// Data length.
        len: usize,
    },
    /// OpenCV failed.
    #[error("opencv failed to {what}: {source}")]
    OpenCv {
        /// What was being done.
        what: &'static str,
        /// OpenCV's error.
        source: opencv::Error,
    },
}

fn cv(what: &'static str) -> impl FnOnce(opencv::Error) -> EncodeError {
    move |source| EncodeError::OpenCv { what, source }
}

/// What the overlay shows besides the frame.
#[derive(Debug, Clone, Copy)]
pub struct OverlayInput<'a> {
    /// Fresh detections, if any.
    pub detections: Option<&'a Detections>,
    /// CLOCK_MONOTONIC now, for the frame age.
    pub now_ns: u64,
}

/// Encodes `frame` as a JPEG of `quality`, with the overlay drawn when `overlay` is given
/// (on a copy held in `scratch`, reused between calls).
pub fn encode(
    frame: &RawFrame,
    quality: u8,
    overlay: Option<OverlayInput<'_>>,
    scratch: &mut Vec<u8>,
) -> Result<Vector<u8>, EncodeError> {
    if !frame.is_valid() {
        return Err(EncodeError::BadFrame {
            frame_number: frame.frame_number,
            width: frame.width,
            height: frame.height,
            stride: frame.stride,
            len: frame.data.len(),
        });
    }
    let (w, h) = (frame.width as usize, frame.height as usize);
    let row = w * 3;
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(quality)]);
    let mut out = Vector::<u8>::new();
    match overlay {
        None if frame.stride as usize == row => {
            let mat =
                Mat::new_rows_cols_with_bytes::<Vec3b>(h as i32, w as i32, &frame.data[..row * h])
                    .map_err(cv("wrap the frame"))?;
            imgcodecs::imencode(".jpg", &mat, &mut out, &params).map_err(cv("encode a JPEG"))?;
        }
        _ => {
            // Tightly packed copy: needed for drawing, and for strided frames.
            scratch.clear();
            scratch.reserve(row * h);
            for y in 0..h {
                let start = y * frame.stride as usize;
                scratch.extend_from_slice(&frame.data[start..start + row]);
            }
            let mut mat = Mat::new_rows_cols_with_bytes_mut::<Vec3b>(h as i32, w as i32, scratch)
                .map_err(cv("wrap the frame copy"))?;
            if let Some(input) = overlay {
                draw_overlay(&mut mat, frame, input)?;
            }
            imgcodecs::imencode(".jpg", &mat, &mut out, &params).map_err(cv("encode a JPEG"))?;
        }
    }
    Ok(out)
}

/// BGR colour of a ball kind.
pub fn kind_colour(kind: BallKind) -> Scalar {
    match kind {
        BallKind::Cue => Scalar::new(255.0, 255.0, 255.0, 0.0),
        BallKind::Eight => Scalar::new(40.0, 40.0, 40.0, 0.0),
        BallKind::Solid => Scalar::new(0.0, 165.0, 255.0, 0.0),
        BallKind::Stripe => Scalar::new(255.0, 80.0, 200.0, 0.0),
        BallKind::Unknown => Scalar::new(160.0, 160.0, 160.0, 0.0),
    }
}

/// A finite coordinate clamped into a range that OpenCV draws safely.
fn px(v: f64, limit: i32) -> Option<i32> {
    v.is_finite()
        .then(|| v.round().clamp(-(limit as f64), 2.0 * limit as f64) as i32)
}

fn draw_overlay(
    mat: &mut impl ToInputOutputArray,
    frame: &RawFrame,
    input: OverlayInput<'_>,
) -> Result<(), EncodeError> {
    let (w, h) = (frame.width as i32, frame.height as i32);
    let limit = w.max(h);
    let thick = (w / 640).max(1) + 1;
    let aa = imgproc::LINE_AA;
    if let Some(d) = input.detections {
        if let Some(table) = &d.table {
            let pts: Vector<Point> = table
                .corners
                .iter()
                .take(64)
                .filter_map(|[x, y]| Some(Point::new(px(*x, limit)?, px(*y, limit)?)))
                .collect();
            if pts.len() >= 2 {
                let mut polys = Vector::<Vector<Point>>::new();
                polys.push(pts);
                imgproc::polylines(
                    mat,
                    &polys,
                    true,
                    Scalar::new(0.0, 255.0, 255.0, 0.0),
                    thick,
                    aa,
                    0,
                )
                .map_err(cv("draw the table outline"))?;
            }
        }
        for b in d.balls.iter().take(256) {
            let (Some(x), Some(y), Some(r)) = (px(b.x, limit), px(b.y, limit), px(b.radius, limit))
            else {
                continue;
            };
            let r = r.max(2);
            if b.kind == BallKind::Eight {
                // A dark circle on a dark ball needs a light rim to be seen.
                imgproc::circle(
                    mat,
                    Point::new(x, y),
                    r + thick,
                    Scalar::all(255.0),
                    1,
                    aa,
                    0,
                )
                .map_err(cv("draw a ball"))?;
            }
            imgproc::circle(mat, Point::new(x, y), r, kind_colour(b.kind), thick, aa, 0)
                .map_err(cv("draw a ball"))?;
        }
    }
    let age_ms = input.now_ns.saturating_sub(frame.capture_ns) as f64 / 1e6;
    let text = match input.detections {
        Some(d) => format!(
            "frame {}  age {:.0} ms  balls {}",
            frame.frame_number,
            age_ms,
            d.balls.len()
        ),
        None => format!(
            "frame {}  age {:.0} ms  no fresh detections",
            frame.frame_number, age_ms
        ),
    };
    let scale = (f64::from(w) / 1280.0).max(0.4) * 0.8;
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    let mut baseline = 0;
    let size = imgproc::get_text_size(&text, font, scale, thick, &mut baseline)
        .map_err(cv("measure the overlay text"))?;
    let pad = 6;
    imgproc::rectangle(
        mat,
        Rect::new(
            0,
            0,
            (size.width + 2 * pad).min(w),
            (size.height + baseline + 2 * pad).min(h),
        ),
        Scalar::new(0.0, 0.0, 0.0, 0.0),
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )
    .map_err(cv("draw the overlay box"))?;
    imgproc::put_text(
        mat,
        &text,
        Point::new(pad, pad + size.height),
        font,
        scale,
        Scalar::new(255.0, 255.0, 255.0, 0.0),
        thick,
        aa,
        false,
    )
    .map_err(cv("draw the overlay text"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detections::{Ball, Table};
    use opencv::prelude::*;

    fn frame(w: u32, h: u32, stride: u32) -> RawFrame {
        let mut data = vec![0u8; (stride * h) as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                let i = y * stride as usize + x * 3;
                data[i] = (x * 255 / w as usize) as u8;
                data[i + 1] = 120;
                data[i + 2] = (y * 255 / h as usize) as u8;
            }
        }
        RawFrame {
            frame_number: 9,
            capture_ns: 1,
            publish_ns: 2,
            width: w,
            height: h,
            stride,
            data,
        }
    }

    fn decode(jpeg: &[u8]) -> Mat {
        let buf = Vector::<u8>::from_slice(jpeg);
        imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR).unwrap()
    }

    #[test]
    fn encodes_a_decodable_jpeg_of_the_frame_size() {
        let f = frame(160, 90, 480);
        let mut scratch = Vec::new();
        let hi = encode(&f, 95, None, &mut scratch).unwrap();
        let lo = encode(&f, 10, None, &mut scratch).unwrap();
        assert!(hi.len() > lo.len());
        assert_eq!(&hi.as_slice()[..2], b"\xff\xd8");
        let m = decode(hi.as_slice());
        assert_eq!((m.cols(), m.rows()), (160, 90));
        assert!(scratch.is_empty(), "no copy without overlay");
    }

    #[test]
    fn strided_frames_and_overlay_are_handled() {
        let f = frame(160, 90, 500);
        let mut scratch = Vec::new();
        let d = Detections {
            frame_number: 9,
            capture_ts_ns: 1,
            processed_ts_ns: 2,
            table: Some(Table {
                corners: vec![[10.0, 10.0], [150.0, 10.0], [150.0, 80.0], [10.0, 80.0]],
            }),
            balls: vec![
                Ball {
                    x: 50.0,
                    y: 50.0,
                    radius: 8.0,
                    kind: BallKind::Cue,
                },
                Ball {
                    x: f64::NAN,
                    y: 1e300,
                    radius: -5.0,
                    kind: BallKind::Eight,
                },
                Ball {
                    x: -1e12,
                    y: 5.0,
                    radius: 1e12,
                    kind: BallKind::Stripe,
                },
            ],
            shot: None,
        };
        let plain = encode(&f, 90, None, &mut scratch).unwrap();
        let with = encode(
            &f,
            90,
            Some(OverlayInput {
                detections: Some(&d),
                now_ns: 5_000_000,
            }),
            &mut scratch,
        )
        .unwrap();
        let none = encode(
            &f,
            90,
            Some(OverlayInput {
                detections: None,
                now_ns: 5_000_000,
            }),
            &mut scratch,
        )
        .unwrap();
        let (a, b, c) = (
            decode(plain.as_slice()),
            decode(with.as_slice()),
            decode(none.as_slice()),
        );
        assert_eq!((b.cols(), b.rows()), (160, 90));
        // The cue ball's circle changes pixels near (58, 50) compared with the plain frame.
        let pa = *a.at_2d::<Vec3b>(50, 58).unwrap();
        let pb = *b.at_2d::<Vec3b>(50, 58).unwrap();
        assert!(pb[1] > pa[1] + 60 || pb[0] > pa[0] + 60, "{pa:?} {pb:?}");
        // The text box (black) is drawn in both overlay variants.
        let tb = *c.at_2d::<Vec3b>(3, 3).unwrap();
        assert!(tb[0] < 40 && tb[1] < 40, "{tb:?}");
        // The frame itself was not touched.
        assert_eq!(f.data, frame(160, 90, 500).data);
    }

    #[test]
    fn inconsistent_frames_are_refused() {
        let mut f = frame(16, 16, 48);
        f.data.truncate(100);
        assert!(matches!(
            encode(&f, 80, None, &mut Vec::new()),
            Err(EncodeError::BadFrame { .. })
        ));
    }
}
