//! The live dashboard served at `/`: one self-contained page (inline CSS and JS, no external
//! resource, works offline). It shows the stream with an overlay toggle and quality/fps
//! selectors, the worker table from `/api/status`, the stream figures from `/api/stream`, the
//! detections by kind from `/api/detections`, and a banner when the video worker is down. With
//! `stream.auth_token` set, open it as `/?token=TOKEN`; the page passes the token on.

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
        ] {
            assert!(PAGE.contains(id), "{id}");
        }
        for endpoint in [
            "/stream/video",
            "/api/status",
            "/api/detections",
            "/api/stream",
        ] {
            assert!(PAGE.contains(endpoint), "{endpoint}");
        }
    }
}
