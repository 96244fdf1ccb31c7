//! The history of finished shots (`GET /api/shots`) and the feed of new ones (the push API's
//! `shot` message).
//!
//! The vision worker repeats its newest finished shot on the detections records of about a
//! second after the shot ended, so a reader that skips records still sees it; this log keeps
//! each shot once, telling them apart by id and start frame (a restarted vision worker counts
//! ids from 1 again, with other frames).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use billiards_detections::ShotJson;

/// Shots kept for `/api/shots` (also the largest `limit` it accepts).
pub const MAX_SHOTS: usize = 1000;
/// `limit` of `/api/shots` when none is given.
pub const DEFAULT_LIMIT: usize = 20;

/// Finished shots, newest first, and a latest-value channel of new ones.
#[derive(Debug)]
pub struct ShotLog {
    history: Mutex<VecDeque<Arc<ShotJson>>>,
    new_shot: tokio::sync::watch::Sender<Option<Arc<ShotJson>>>,
}

impl Default for ShotLog {
    fn default() -> Self {
        ShotLog {
            history: Mutex::new(VecDeque::new()),
            new_shot: tokio::sync::watch::Sender::new(None),
        }
    }
}

impl ShotLog {
    /// Keeps `shot` unless it is the newest one already kept; returns whether it was new.
    pub fn record(&self, shot: &ShotJson) -> bool {
        let Ok(mut h) = self.history.lock() else {
            return false;
        };
        if h.front()
            .is_some_and(|s| s.id == shot.id && s.start_frame == shot.start_frame)
        {
            return false;
        }
        let shot = Arc::new(shot.clone());
        h.push_front(shot.clone());
        h.truncate(MAX_SHOTS);
        drop(h);
        self.new_shot.send_replace(Some(shot));
        true
    }

    /// The newest `limit` shots, newest first.
    pub fn newest(&self, limit: usize) -> Vec<Arc<ShotJson>> {
        self.history
            .lock()
            .map(|h| h.iter().take(limit).cloned().collect())
            .unwrap_or_default()
    }

    /// Follows new shots (the newest only: a slow follower skips).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Arc<ShotJson>>> {
        self.new_shot.subscribe()
    }
}

/// Parses the `limit` of `/api/shots`: a whole number from 1 to [`MAX_SHOTS`], or the default.
pub fn parse_limit(raw: Option<&str>) -> Result<usize, String> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_SHOTS).contains(&n) => Ok(n),
        _ => Err(format!(
            "limit must be a whole number from 1 to {MAX_SHOTS}; got {raw:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shot(id: u64, start_frame: u64) -> ShotJson {
        ShotJson {
            id,
            start_frame,
            end_frame: start_frame + 40,
            start_unix_s: 0.0,
            duration_s: 1.3,
            balls_moved: vec![0, 5],
            pocketed: vec![],
            cue_ball_first_hit: Some(5),
        }
    }

    #[test]
    fn repeats_are_kept_once_and_newest_comes_first() {
        let log = ShotLog::default();
        let mut rx = log.subscribe();
        assert!(log.record(&shot(1, 10)));
        assert!(!log.record(&shot(1, 10)), "a repeat on the next record");
        assert!(log.record(&shot(2, 80)));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().as_ref().unwrap().id, 2);
        // A restarted vision worker numbers from 1 again.
        assert!(log.record(&shot(1, 5)));
        let ids: Vec<(u64, u64)> = log
            .newest(10)
            .iter()
            .map(|s| (s.id, s.start_frame))
            .collect();
        assert_eq!(ids, vec![(1, 5), (2, 80), (1, 10)]);
        assert_eq!(log.newest(1).len(), 1);
        for i in 0..(MAX_SHOTS as u64 + 5) {
            log.record(&shot(10 + i, 1000 + i));
        }
        assert_eq!(log.newest(usize::MAX).len(), MAX_SHOTS);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(parse_limit(Some("5")), Ok(5));
        assert_eq!(parse_limit(Some("1000")), Ok(1000));
        for bad in ["0", "1001", "-1", "ten", ""] {
            let e = parse_limit(Some(bad)).unwrap_err();
            assert!(e.contains("from 1 to 1000"), "{e}");
        }
    }
}
