//! The live dashboard served at `/`: one self-contained page (inline CSS and JS, no external
//! resource, works offline). It shows the stream with quality/fps selectors and, on a canvas
//! over it, the detections overlay drawn in the browser (table outline, balls in their kind's
//! colour with their number or id, velocity arrows); toggling it never reconnects the stream.
//! Detections and the worker table come pushed over `/api/ws`; when the socket fails the page
//! says so and polls `/api/detections` and `/api/status` instead. The stream figures come from
//! `/api/stream`, and a banner shows when the video worker is down. The canvas carries
//! `data-balls-drawn` (the balls on it now) for tests. With `stream.auth_token` set, open it as
//! `/?token=TOKEN`; the page passes the token on.

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn page_is_self_contained() {
        for external in ["http://", "https://", "src=\"//", "href=\"//", "@import"] {
            assert!(
                !PAGE.contains(external),
                "page refers to an external resource: {external}"
            );
        }
    }

    #[test]
    fn page_has_the_elements_the_browser_test_uses() {
        for id in [
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
            assert!(PAGE.contains(id), "{id}");
        }
        for endpoint in [
            "/stream/video",
            "/api/status",
            "/api/detections",
            "/api/stream",
            "/api/ws",
        ] {
            assert!(PAGE.contains(endpoint), "{endpoint}");
        }
    }
}
