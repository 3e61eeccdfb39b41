//! The page shell every console page shares, and escaping: every text that reaches the HTML
//! passes through [`escape`] (names, messages and errors come from users and agents).

use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    push_escaped(&mut out, text);
    out
}

/// [`escape`] into an existing buffer (the job page writes thousands of rows).
pub fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Percent-encodes a query or path component.
pub fn url_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The navigation tab a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Jobs,
    Run,
    Applications,
    Cluster,
    None,
}

/// What the shell needs to know about the page and its viewer.
pub struct Shell<'a> {
    pub title: &'a str,
    pub tab: Tab,
    /// The logged-in user's login, `None` on the login page.
    pub user: Option<&'a str>,
    /// The session's CSRF token (forms and the script's POSTs carry it).
    pub csrf: Option<&'a str>,
    /// Base URLs of the cluster's members, for the live views' failover.
    pub members: &'a [String],
    /// This node's id, shown in the footer.
    pub node_id: u64,
}

/// A complete page: `body` is already-escaped HTML.
pub fn page(shell: &Shell<'_>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(out, "<title>{} · porch</title>", escape(shell.title));
    if let Some(csrf) = shell.csrf {
        let _ = write!(
            out,
            "<meta name=\"porch-csrf\" content=\"{}\">",
            escape(csrf)
        );
    }
    let _ = write!(
        out,
        "<meta name=\"porch-members\" content=\"{}\">",
        escape(&shell.members.join(" "))
    );
    let _ = write!(
        out,
        "<link rel=\"stylesheet\" href=\"/console/assets/console.css?v={v}\">\
         <script defer src=\"/console/assets/console.js?v={v}\"></script></head><body>",
        v = super::assets::VERSION
    );
    out.push_str("<a class=\"skip\" href=\"#main\">Skip to content</a><header><nav aria-label=\"main\"><a class=\"brand\" href=\"/console/jobs\">porch</a>");
    if shell.user.is_some() {
        for (tab, href, label) in [
            (Tab::Jobs, "/console/jobs", "Jobs"),
            (Tab::Run, "/console/run", "Run"),
            (Tab::Applications, "/console/apps", "Applications"),
            (Tab::Cluster, "/console/cluster", "Cluster"),
        ] {
            let current = if tab == shell.tab {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(out, "<a href=\"{href}\"{current}>{label}</a>");
        }
    }
    out.push_str("</nav>");
    if let (Some(user), Some(csrf)) = (shell.user, shell.csrf) {
        let _ = write!(
            out,
            "<form class=\"logout\" method=\"post\" action=\"/console/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><span>{}</span> \
             <button type=\"submit\">Log out</button></form>",
            escape(csrf),
            escape(user)
        );
    }
    out.push_str("</header><div id=\"banner\" role=\"status\" aria-live=\"polite\" hidden></div>");
    out.push_str("<main id=\"main\">");
    out.push_str(body);
    let _ = write!(
        out,
        "</main><footer>served by node {}</footer></body></html>",
        shell.node_id
    );
    out
}

/// A message box (`kind`: `error`, `info`).
pub fn notice(kind: &str, text: &str) -> String {
    format!(
        "<p class=\"notice {kind}\" role=\"{}\">{}</p>",
        if kind == "error" { "alert" } else { "status" },
        escape(text)
    )
}

/// Milliseconds as a short duration: `850 ms`, `12.3 s`, `4 min 05 s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_and_messages_is_escaped() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn url_components_are_percent_encoded() {
        assert_eq!(url_component("Lamp[prod] a&b"), "Lamp%5Bprod%5D%20a%26b");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
    }
}
