//! The "no signal" placeholder (SPEC "Camera, calibration and no signal"): while no fresh frame
//! exists, `/stream/video` and `/snapshot.jpg` show a JPEG of the configured size that says
//! "NO SIGNAL" and why (the video worker's last exit reason, from the supervisor's status).
//!
//! The JPEG is rendered and encoded once per reason change, by one task, and shared by every
//! variant and snapshot; the variants send it at 1 fps (see `hub`). The task asks the
//! supervisor only while frames are missing, so a healthy stream costs nothing here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opencv::core::{Mat, Point, Scalar, Vector, CV_8UC3};
use opencv::{imgcodecs, imgproc};
use protocol::Status;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::encode::EncodeError;
use crate::shutdown::Shutdown;

/// How often the placeholder is sent to a stream client, and how often the reason is checked.
pub const PERIOD: Duration = Duration::from_secs(1);
/// How long one status request may take before the reason falls back to "not reachable".
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many lines of reason under "NO SIGNAL" (a longer reason is cut with "...").
const MAX_REASON_LINES: usize = 4;

/// The current placeholder.
#[derive(Debug)]
pub struct Placeholder {
    /// Why there is no signal, as drawn.
    pub reason: String,
    /// The encoded JPEG.
    pub jpeg: Bytes,
}

/// The latest placeholder; `None` until the first one is rendered.
pub type PlaceholderRx = watch::Receiver<Option<Arc<Placeholder>>>;

fn cv(what: &'static str) -> impl FnOnce(opencv::Error) -> EncodeError {
    move |source| EncodeError::OpenCv { what, source }
}

/// What OpenCV's Hershey fonts can draw: printable ASCII; anything else becomes `?`.
fn drawable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Splits `text` into lines no wider than `max_width` pixels (as measured by `width`), at
/// spaces where possible, at most `max_lines` (the last one ends in "..." when cut).
fn wrap(text: &str, max_width: i32, max_lines: usize, width: impl Fn(&str) -> i32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_string()
        } else {
            format!("{current} {word}")
        };
        if width(&candidate) <= max_width || current.is_empty() {
            current = candidate;
        } else {
            lines.push(std::mem::replace(&mut current, word.to_string()));
        }
        // A single word wider than the line (a long path) is cut into pieces.
        while width(&current) > max_width && current.chars().count() > 1 {
            let mut cut = current.chars().count() - 1;
            while cut > 1 && width(&current.chars().take(cut).collect::<String>()) > max_width {
                cut -= 1;
            }
            let head: String = current.chars().take(cut).collect();
            let tail: String = current.chars().skip(cut).collect();
            lines.push(head);
            current = tail;
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            while !last.is_empty() && width(&format!("{last}...")) > max_width {
                last.pop();
            }
            last.push_str("...");
        }
    }
    lines
}

/// Renders the placeholder: a dark `width` x `height` image with "NO SIGNAL" and `reason`
/// under it, encoded as a JPEG of `quality`.
pub fn render(width: u32, height: u32, reason: &str, quality: u8) -> Result<Vec<u8>, EncodeError> {
    let (w, h) = (width.max(1) as i32, height.max(1) as i32);
    let mut mat =
        Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::new(40.0, 32.0, 32.0, 0.0))
            .map_err(cv("allocate the placeholder"))?;
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    let aa = imgproc::LINE_AA;
    let measure = |text: &str, scale: f64, thick: i32| -> Result<(i32, i32), EncodeError> {
        let mut base = 0;
        let s = imgproc::get_text_size(text, font, scale, thick, &mut base)
            .map_err(cv("measure the placeholder text"))?;
        Ok((s.width, s.height + base))
    };
    // "NO SIGNAL" spans 60% of the width.
    let title = "NO SIGNAL";
    let (tw1, _) = measure(title, 1.0, 2)?;
    let scale = (0.6 * w as f64 / tw1.max(1) as f64).max(0.1);
    let thick = ((scale * 2.0).round() as i32).max(1);
    let (tw, th) = measure(title, scale, thick)?;
    // The reason: a smaller font, wrapped into 90% of the width.
    let rscale = (scale / 3.5).max(0.3);
    let rthick = ((rscale * 1.5).round() as i32).max(1);
    let max_w = (w as f64 * 0.9) as i32;
    let reason = drawable(reason);
    let lines = wrap(&reason, max_w, MAX_REASON_LINES, |s| {
        measure(s, rscale, rthick).map_or(i32::MAX, |m| m.0)
    });
    let line_h = (measure("Ag", rscale, rthick)?.1 as f64 * 1.4) as i32;
    let block = th + line_h / 2 + line_h * lines.len() as i32;
    let mut y = (h - block) / 2 + th;
    imgproc::put_text(
        &mut mat,
        title,
        Point::new((w - tw) / 2, y),
        font,
        scale,
        Scalar::new(235.0, 235.0, 235.0, 0.0),
        thick,
        aa,
        false,
    )
    .map_err(cv("draw the placeholder title"))?;
    y += line_h / 2;
    for line in &lines {
        y += line_h;
        let (lw, _) = measure(line, rscale, rthick)?;
        imgproc::put_text(
            &mut mat,
            line,
            Point::new((w - lw) / 2, y),
            font,
            rscale,
            Scalar::new(150.0, 190.0, 255.0, 0.0),
            rthick,
            aa,
            false,
        )
        .map_err(cv("draw the placeholder reason"))?;
    }
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(quality)]);
    let mut out = Vector::<u8>::new();
    imgcodecs::imencode(".jpg", &mat, &mut out, &params).map_err(cv("encode the placeholder"))?;
    Ok(out.as_slice().to_vec())
}

/// Why there is no signal, from the supervisor's status: the video worker's last exit reason,
/// else its state.
pub fn reason_from_status(status: &Status) -> String {
    match status.workers.iter().find(|w| w.name == "video") {
        None => "the video worker is not part of this tree".to_string(),
        Some(v) => match &v.last_exit {
            Some(e) => e.reason.clone(),
            None => format!("waiting for the video worker ({})", v.state),
        },
    }
}

/// Keeps the placeholder up to date: renders one at once, then, while `fresh` says no fresh
/// frame exists, asks the supervisor at `socket` for the reason every [`PERIOD`] and renders
/// a new placeholder when it changed. Ends with `shutdown`.
pub async fn run(
    socket: PathBuf,
    width: u32,
    height: u32,
    quality: u8,
    fresh: impl Fn() -> bool,
    tx: watch::Sender<Option<Arc<Placeholder>>>,
    mut shutdown: Shutdown,
) {
    let mut shown: Option<String> = None;
    loop {
        if shown.is_none() || !fresh() {
            let reason = match crate::control::status(&socket, STATUS_TIMEOUT).await {
                Ok(s) => reason_from_status(&s),
                Err(e) if e.is_unavailable() => {
                    "no frame from the video worker (the supervisor is not reachable)".to_string()
                }
                Err(e) => format!("no frame from the video worker (status: {e})"),
            };
            if shown.as_deref() != Some(reason.as_str()) {
                let r = reason.clone();
                let job =
                    tokio::task::spawn_blocking(move || render(width, height, &r, quality)).await;
                match job {
                    Ok(Ok(jpeg)) => {
                        if shown.is_some() {
                            info!(worker = "stream", reason = %reason, "no signal");
                        } else {
                            debug!(worker = "stream", reason = %reason, "placeholder rendered");
                        }
                        tx.send_replace(Some(Arc::new(Placeholder {
                            reason: reason.clone(),
                            jpeg: Bytes::from(jpeg),
                        })));
                        shown = Some(reason);
                    }
                    Ok(Err(e)) => warn!(worker = "stream", "cannot render the placeholder: {e}"),
                    Err(e) => warn!(worker = "stream", "cannot render the placeholder: {e}"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PERIOD) => {}
            _ = shutdown.recv() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::prelude::*;

    #[test]
    fn the_placeholder_has_the_configured_size() {
        for (w, h) in [(640, 360), (1280, 720), (64, 48)] {
            let jpeg = render(w, h, "camera unavailable: /dev/video-nonexistent", 80).unwrap();
            let mat =
                imgcodecs::imdecode(&Vector::<u8>::from_slice(&jpeg), imgcodecs::IMREAD_COLOR)
                    .unwrap();
            assert_eq!((mat.cols(), mat.rows()), (w as i32, h as i32));
        }
    }

    #[test]
    fn the_placeholder_shows_text() {
        let jpeg = render(640, 360, "camera unavailable: /dev/video9", 90).unwrap();
        let mat = imgcodecs::imdecode(
            &Vector::<u8>::from_slice(&jpeg),
            imgcodecs::IMREAD_GRAYSCALE,
        )
        .unwrap();
        // The background is dark; the title's strokes are light.
        let bright = (0..mat.rows())
            .flat_map(|y| (0..mat.cols()).map(move |x| (y, x)))
            .filter(|&(y, x)| *mat.at_2d::<u8>(y, x).unwrap() > 200)
            .count();
        assert!(bright > 500, "{bright} bright pixels");
    }

    #[test]
    fn long_reasons_wrap_and_are_cut() {
        let width = |s: &str| s.len() as i32;
        assert_eq!(wrap("a bb ccc", 4, 4, width), ["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4, 4, width), ["abcd", "efgh", "ij"]);
        let lines = wrap("w1 w2 w3 w4 w5 w6", 5, 2, width);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with("..."), "{lines:?}");
        assert!(lines.iter().all(|l| l.len() <= 5), "{lines:?}");
        assert!(wrap("", 10, 4, width).is_empty());
    }

    #[test]
    fn only_drawable_characters_remain() {
        assert_eq!(drawable("caméra: ok"), "cam?ra: ok");
        assert_eq!(drawable("a\tb"), "a?b");
    }
}
