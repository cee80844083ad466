//! Reading Contact header elements without the full parser: the URI and header parameters
//! (`expires`, `+sip.instance`, `reg-id`), quotes respected.

/// Byte offsets of the `<` and `>` around the URI of a name-addr (quotes respected).
fn angle_span(elem: &str) -> Option<(usize, usize)> {
    let mut in_quote = false;
    let mut escaped = false;
    let mut open = None;
    for (i, c) in elem.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '<' if !in_quote && open.is_none() => open = Some(i),
            '>' if !in_quote => return open.map(|o| (o, i)),
            _ => {}
        }
    }
    None
}

/// The URI text between `<` and `>` of a Contact element (or up to the first `;`).
pub(super) fn contact_uri_text(elem: &str) -> Option<&str> {
    let elem = elem.trim();
    match angle_span(elem) {
        Some((a, b)) => Some(&elem[a + 1..b]),
        None => elem.split(';').next().map(str::trim),
    }
}

/// A header parameter (after the `>` of a name-addr) of a Contact element, unquoted.
pub(super) fn header_param<'a>(elem: &'a str, name: &str) -> Option<&'a str> {
    let params = match angle_span(elem) {
        Some((_, i)) => &elem[i + 1..],
        None => elem.find(';').map_or("", |i| &elem[i..]),
    };
    let mut rest = params;
    while let Some(start) = rest.find(';') {
        rest = &rest[start + 1..];
        // A parameter ends at the next `;` outside quotes.
        let mut in_quote = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quote = !in_quote;
                }
                c == ';' && !in_quote
            })
            .map_or(rest.len(), |(i, _)| i);
        let p = &rest[..end];
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        if n.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim().trim_matches('"'));
        }
        rest = &rest[end..];
    }
    None
}
