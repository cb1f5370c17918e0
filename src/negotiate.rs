//! Body format of a denial, from the `Accept` header.

/// JSON unless the client prefers HTML: JSON when `application/json` ranks
/// above `text/html` or HTML is absent (as with curl's and fetch's `*/*`).
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let mut html = 0.0f32;
    let mut json = 0.0f32;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if media.eq_ignore_ascii_case("text/html") || media.eq_ignore_ascii_case("text/*") {
            html = html.max(q);
        } else if media.eq_ignore_ascii_case("application/json")
            || media.eq_ignore_ascii_case("application/*")
            || media == "*/*"
        {
            json = json.max(q);
        }
    }
    html > 0.0 && html >= json
}

#[cfg(test)]
mod tests {
    use super::prefers_html;

    #[test]
    fn accept_table() {
        let cases = [
            (None, false),
            (Some("*/*"), false),
            (Some("application/json"), false),
            (Some("text/html"), true),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                true,
            ),
            (Some("application/json, text/html;q=0.5"), false),
            (Some("text/html;q=0.5, application/json"), false),
            (Some("text/html, application/json"), true),
            (Some("text/html;q=0"), false),
            (Some("TEXT/HTML"), true),
            (Some("garbage;;;q=zz"), false),
            (Some("text/html;q=2"), true),
        ];
        for (accept, want) in cases {
            assert_eq!(prefers_html(accept), want, "{accept:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = prefers_html(Some(&s));
        }
    }
}
