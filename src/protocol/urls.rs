//! Adding parameters to URLs that are not ours (service URLs, callbacks, logout URLs):
//! their own query and fragment are kept byte for byte.

/// LOGIN-16: `ticket` goes before any `#fragment`, after the service's own query, which
/// is kept byte for byte and in order.
pub fn append_ticket(service: &str, ticket: &str) -> String {
    append_query(service, &[("ticket", ticket)])
}

/// Appends `name=value` pairs to `url`'s query, before any fragment, keeping what is
/// there (LOGIN-16, PCB-04). Values are ticket ids, which never need encoding (TKT-01).
pub fn append_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len() + 80);
    out.push_str(base);
    for (name, value) in pairs {
        if !out.contains('?') {
            out.push('?');
        } else if !out.ends_with('?') && !out.ends_with('&') {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_goes_before_the_fragment_and_after_the_query() {
        assert_eq!(
            append_ticket("https://a/x", "ST-1"),
            "https://a/x?ticket=ST-1"
        );
        assert_eq!(
            append_ticket("https://a/x?b=2&a=1", "ST-1"),
            "https://a/x?b=2&a=1&ticket=ST-1"
        );
        assert_eq!(
            append_ticket("https://a/x?b=2#frag?x", "ST-1"),
            "https://a/x?b=2&ticket=ST-1#frag?x"
        );
        assert_eq!(
            append_ticket("https://a/x?", "ST-1"),
            "https://a/x?ticket=ST-1"
        );
    }
}
