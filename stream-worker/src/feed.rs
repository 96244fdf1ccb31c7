//! A synthetic frame publisher for the process tests and the load generator: it plays the
//! video worker's part (one `shm_core::Writer` on a thread, publishing at a fixed rate), so
//! the stream worker can be tested and measured without the capture stack. Not used by the
//! server itself.
//!
//! Frames are a textured green table with moving balls, pre-rendered once and cycled, so
//! publishing costs one copy per frame and JPEG sizes resemble a real scene's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shm_core::{PublishMeta, SegmentLocation, SegmentSpec, Writer};

/// How many distinct frames are rendered and cycled.
const DISTINCT_FRAMES: usize = 30;

/// Renders frame `i` of the cycle: BGR8, `width * 3` bytes per row.
pub fn render(width: u32, height: u32, i: usize) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut data = vec![0u8; w * h * 3];
    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ (i as u64).wrapping_mul(0x9e37_79b9);
    let rail = (h / 16).max(1);
    for y in 0..h {
        for x in 0..w {
            // Cheap xorshift noise: sensor-like texture, so JPEGs are not trivially small.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed & 15) as u8;
            let p = (y * w + x) * 3;
            let on_rail = x < rail || y < rail || x >= w - rail || y >= h - rail;
            let (b, g, r) = if on_rail {
                (20 + n, 50 + n, 90 + n)
            } else {
                let shade = ((x * 40) / w.max(1)) as u8;
                (30 + n, 100 + shade + n, 30 + n)
            };
            data[p] = b;
            data[p + 1] = g;
            data[p + 2] = r;
        }
    }
    // Sixteen balls moving along the table.
    let radius = (h / 36).max(2);
    for k in 0..16usize {
        let t = i as f64 / DISTINCT_FRAMES as f64 * std::f64::consts::TAU;
        let cx = (w as f64 * (0.2 + 0.6 * ((k as f64 * 0.7 + t).sin() * 0.5 + 0.5))) as isize;
        let cy = (h as f64 * (0.2 + 0.6 * ((k as f64 * 1.3 + t).cos() * 0.5 + 0.5))) as isize;
        let colour: [u8; 3] = match k {
            0 => [240, 240, 240],
            8 => [20, 20, 20],
            _ => [
                (k * 37 % 255) as u8,
                (k * 91 % 255) as u8,
                (k * 53 % 255) as u8,
            ],
        };
        let r = radius as isize;
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy > r * r {
                    continue;
                }
                let (x, y) = (cx + dx, cy + dy);
                if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
                    continue;
                }
                let p = (y as usize * w + x as usize) * 3;
                data[p..p + 3].copy_from_slice(&colour);
            }
        }
    }
    data
}

/// A running synthetic writer.
#[derive(Debug)]
pub struct Feed {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// Why a feed could not start.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The writer could not open the segment.
    #[error(transparent)]
    Open(#[from] shm_core::OpenError),
    /// The thread could not start or died.
    #[error("feed thread: {0}")]
    Thread(String),
}

impl Feed {
    /// Opens the (existing) segment `loc` as its writer and publishes `width` x `height`
    /// frames at `fps` until stopped or dropped.
    pub fn start(
        loc: SegmentLocation,
        width: u32,
        height: u32,
        fps: u32,
        slots: u32,
    ) -> Result<Feed, FeedError> {
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let (stop2, published2) = (stop.clone(), published.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("feed".into())
            .spawn(move || {
                let spec = SegmentSpec::frames(width, height, slots);
                let mut writer = match Writer::open(&loc, &spec) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let frames: Vec<Vec<u8>> = (0..DISTINCT_FRAMES)
                    .map(|i| render(width, height, i))
                    .collect();
                let _ = ready_tx.send(Ok(()));
                let period = Duration::from_secs_f64(1.0 / f64::from(fps.max(1)));
                let mut next = Instant::now();
                let mut i = 0usize;
                while !stop2.load(Relaxed) {
                    let meta = PublishMeta::bgr(width, height, shm_core::monotonic_ns());
                    if writer.publish(&frames[i % frames.len()], meta).is_ok() {
                        published2.fetch_add(1, Relaxed);
                    }
                    i += 1;
                    next += period;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else if now - next > period * 4 {
                        // Far behind (machine busy): do not burst to catch up.
                        next = now;
                    }
                }
            })
            .map_err(|e| FeedError::Thread(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Feed {
                stop,
                published,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(FeedError::Open(e))
            }
            Err(_) => {
                let _ = thread.join();
                Err(FeedError::Thread("ended before opening the segment".into()))
            }
        }
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Relaxed)
    }

    /// Stops publishing and closes the writer (like a video worker exiting).
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.published()
    }

    fn halt(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_differ_and_have_the_right_size() {
        let a = render(64, 36, 0);
        let b = render(64, 36, 1);
        assert_eq!(a.len(), 64 * 36 * 3);
        assert_ne!(a, b);
    }
}
