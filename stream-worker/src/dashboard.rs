//! The live dashboard served at `/`: one self-contained page (inline CSS and JS, no external
//! resource, works offline). It shows the stream with quality/fps selectors and, on a canvas
//! over it, the detections overlay drawn in the browser (table outline, balls in their kind's
//! colour with their number or id, velocity arrows); toggling it never reconnects the stream.
//! The stream is H.264 (`/stream/h264` played through Media Source Extensions by
//! `h264_player.js`, kept at the live edge) where the browser plays it and `stream.h264` is on,
//! else MJPEG (`/stream/video`); an "H.264 / MJPEG" selector switches, and the page remembers
//! the choice in `localStorage`. Detections and the worker table come pushed over `/api/ws`;
//! when the socket fails the page says so and polls `/api/detections` and `/api/status`
//! instead. The stream figures come from `/api/stream`, and a banner shows when the video
//! worker is down. The canvas carries `data-balls-drawn` (the balls on it now) for tests. With
//! `stream.auth_token` set, open it as `/?token=TOKEN`; the page passes the token on.

use std::sync::LazyLock;

/// Where the page takes the player script.
const PLAYER_MARK: &str = "/*H264_PLAYER*/";

/// The page with the player inlined, built once.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("dashboard.html").replacen(PLAYER_MARK, include_str!("h264_player.js"), 1)
});

/// The page.
pub fn page() -> &'static str {
    PAGE.as_str()
}

#[cfg(test)]
mod tests {
    use super::{page, PLAYER_MARK};

    #[test]
    fn page_is_self_contained() {
        let page = page();
        assert!(!page.contains(PLAYER_MARK), "the player was not inlined");
        assert!(page.contains("class H264Player"), "the player is missing");
        for external in ["http://", "https://", "src=\"//", "href=\"//", "@import"] {
            assert!(
                !page.contains(external),
                "page refers to an external resource: {external}"
            );
        }
    }

    #[test]
    fn page_has_the_elements_the_browser_test_uses() {
        let page = page();
        for id in [
            "id=\"video\"",
            "id=\"mode\"",
            "id=\"bitrate\"",
            "id=\"mode-note\"",
            "id=\"stream\"",
            "id=\"overlay\"",
            "id=\"quality\"",
            "id=\"workers\"",
            "id=\"banner\"",
            "id=\"detections\"",
            "id=\"overlay-canvas\"",
            "data-balls-drawn",
            "id=\"push\"",
            "id=\"push-note\"",
        ] {
            assert!(page.contains(id), "{id}");
        }
        for endpoint in [
            "/stream/video",
            "/stream/h264",
            "/api/status",
            "/api/detections",
            "/api/stream",
            "/api/ws",
        ] {
            assert!(page.contains(endpoint), "{endpoint}");
        }
    }
}
