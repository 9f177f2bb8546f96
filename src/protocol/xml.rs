//! CAS 2/3 XML documents (FMT-01..14). All XML escaping of the project happens here:
//! text goes through quick-xml's escaper, characters XML 1.0 cannot carry are replaced,
//! and attribute names are made into valid element names (P3-06).
//!
//! Shape: `cas:` prefix bound on the root, no XML declaration, one element per line,
//! no padding inside text nodes (FMT-02, FMT-03, FMT-05).

use std::borrow::Cow;
use std::io;

use quick_xml::Writer;
use quick_xml::events::BytesText;

use super::{Failure, ValidationSuccess, format_date};

pub const CAS_NS: &str = "http://www.yale.edu/tp/cas";
const SAMLP_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

/// SLO-03, SLO-05: the LogoutRequest, on one line, no XML declaration, with the `samlp:`
/// and `saml:` prefixes clients match with regular expressions.
pub fn logout_request(id: &str, issue_instant: &str, name_id: &str, session_index: &str) -> String {
    let mut writer = Writer::new(Vec::with_capacity(384));
    let written = writer
        .create_element("samlp:LogoutRequest")
        .with_attributes([
            ("xmlns:samlp", SAMLP_NS),
            ("ID", id),
            ("Version", "2.0"),
            ("IssueInstant", issue_instant),
        ])
        .write_inner_content(|w| {
            w.create_element("saml:NameID")
                .with_attribute(("xmlns:saml", SAML_NS))
                .write_text_content(BytesText::new(&xml_safe(name_id)))?;
            w.create_element("samlp:SessionIndex")
                .write_text_content(BytesText::new(&xml_safe(session_index)))?;
            Ok(())
        });
    if let Err(e) = written {
        tracing::error!(error = %e, "could not write a LogoutRequest");
    }
    String::from_utf8(writer.into_inner()).unwrap_or_default()
}

/// `cas:authenticationSuccess` (FMT-10, FMT-11), children in XSD order (FMT-04).
pub fn authentication_success(success: &ValidationSuccess) -> String {
    document(|w| {
        w.create_element("cas:authenticationSuccess")
            .write_inner_content(|w| {
                text_element(w, "cas:user", &success.user)?;
                if let Some((standard, released)) = &success.attributes {
                    w.create_element("cas:attributes")
                        .write_inner_content(|w| {
                            let date = format_date(standard.authentication_date);
                            text_element(w, "cas:authenticationDate", &date)?;
                            text_element(
                                w,
                                "cas:longTermAuthenticationRequestTokenUsed",
                                bool_str(standard.long_term_authentication_request_token_used),
                            )?;
                            text_element(
                                w,
                                "cas:isFromNewLogin",
                                bool_str(standard.is_from_new_login),
                            )?;
                            for (name, values) in released {
                                let element = format!("cas:{}", element_name(name));
                                for value in values {
                                    text_element(w, &element, value.trim())?;
                                }
                            }
                            Ok(())
                        })?;
                }
                if let Some(iou) = &success.proxy_granting_ticket {
                    text_element(w, "cas:proxyGrantingTicket", iou)?;
                }
                if !success.proxies.is_empty() {
                    w.create_element("cas:proxies").write_inner_content(|w| {
                        for proxy in &success.proxies {
                            text_element(w, "cas:proxy", proxy)?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })
            .map(|_| ())
    })
}

/// `cas:authenticationFailure` with its code and description (FMT-14).
pub fn authentication_failure(failure: &Failure) -> String {
    failure_document("cas:authenticationFailure", failure)
}

/// `/proxy` success (FMT-30).
pub fn proxy_success(proxy_ticket: &str) -> String {
    document(|w| {
        w.create_element("cas:proxySuccess")
            .write_inner_content(|w| text_element(w, "cas:proxyTicket", proxy_ticket))
            .map(|_| ())
    })
}

/// `/proxy` failure (FMT-31).
pub fn proxy_failure(failure: &Failure) -> String {
    failure_document("cas:proxyFailure", failure)
}

fn failure_document(element: &str, failure: &Failure) -> String {
    document(|w| {
        w.create_element(element)
            .with_attribute(("code", failure.code.as_str()))
            .write_text_content(BytesText::new(&xml_safe(&failure.description)))
            .map(|_| ())
    })
}

fn document(body: impl FnOnce(&mut Writer<Vec<u8>>) -> io::Result<()>) -> String {
    let mut writer = Writer::new_with_indent(Vec::with_capacity(512), b' ', 2);
    let written = writer
        .create_element("cas:serviceResponse")
        .with_attribute(("xmlns:cas", CAS_NS))
        .write_inner_content(body);
    if let Err(e) = written {
        // Writing to a Vec cannot fail; keep the response well-formed if it ever does.
        tracing::error!(error = %e, "could not write XML response");
    }
    let mut out = String::from_utf8(writer.into_inner()).unwrap_or_default();
    out.push('\n');
    out
}

fn text_element(w: &mut Writer<Vec<u8>>, name: &str, text: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(&xml_safe(text)))
        .map(|_| ())
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Replaces characters that XML 1.0 cannot carry at all (most C0 controls, U+FFFE/U+FFFF),
/// so a hostile attribute value cannot make the document unparsable.
pub fn xml_safe(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    };
    if text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if allowed(c) { c } else { '\u{FFFD}' })
                .collect(),
        )
    }
}

/// An attribute name as an XML element name: characters XML names cannot hold become
/// `_`, and a name that cannot start an element gets a leading `_` (P3-06).
pub fn element_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    if !out.starts_with(is_name_start_char) {
        out.insert(0, '_');
    }
    out
}

/// XML 1.0 `NameStartChar`, without `:` (it would read as a namespace prefix).
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 `NameChar`, without `:`.
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::OffsetDateTime;

    use super::*;
    use crate::protocol::{ErrorCode, StandardAttributes};

    fn success() -> ValidationSuccess {
        let mut released = BTreeMap::new();
        released.insert(
            "affiliation".to_owned(),
            vec!["staff".to_owned(), "faculty".to_owned()],
        );
        released.insert(
            "display name".to_owned(),
            vec![" <Zoë & \"Bob\"> \u{1} ".to_owned()],
        );
        ValidationSuccess {
            user: "jdoe".into(),
            attributes: Some((
                StandardAttributes {
                    authentication_date: OffsetDateTime::UNIX_EPOCH,
                    long_term_authentication_request_token_used: false,
                    is_from_new_login: true,
                },
                released,
            )),
            proxy_granting_ticket: Some("PGTIOU-x".into()),
            proxies: vec!["https://b/cb".into(), "https://a/cb".into()],
        }
    }

    #[test]
    fn success_document_has_the_spec_shape() {
        let xml = authentication_success(&success());
        assert!(
            xml.starts_with("<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">\n"),
            "{xml}"
        );
        assert!(xml.contains("\n    <cas:user>jdoe</cas:user>\n"), "{xml}");
        assert!(
            xml.contains("<cas:authenticationDate>1970-01-01T00:00:00Z</cas:authenticationDate>")
        );
        assert!(xml.contains("<cas:isFromNewLogin>true</cas:isFromNewLogin>"));
        assert!(xml.contains("<cas:affiliation>staff</cas:affiliation>"));
        assert!(xml.contains("<cas:affiliation>faculty</cas:affiliation>"));
        assert!(
            xml.contains(
                "<cas:display_name>&lt;Zoë &amp; &quot;Bob&quot;&gt; \u{FFFD}</cas:display_name>"
            ),
            "{xml}"
        );
        let user = xml.find("cas:user").unwrap();
        let attrs = xml.find("cas:attributes").unwrap();
        let pgt = xml.find("cas:proxyGrantingTicket").unwrap();
        let proxies = xml.find("cas:proxies").unwrap();
        assert!(user < attrs && attrs < pgt && pgt < proxies);
        assert!(xml.find("https://b/cb").unwrap() < xml.find("https://a/cb").unwrap());
    }

    #[test]
    fn failure_document_escapes_the_description() {
        let xml = authentication_failure(&Failure::new(ErrorCode::InvalidService, "svc '<x>' & y"));
        assert_eq!(
            xml,
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">\n  <cas:authenticationFailure code=\"INVALID_SERVICE\">svc &apos;&lt;x&gt;&apos; &amp; y</cas:authenticationFailure>\n</cas:serviceResponse>\n"
        );
    }

    #[test]
    fn logout_request_has_the_exact_single_line_shape() {
        let xml = logout_request("LR-1", "2024-05-01T12:00:00Z", "a<b", "ST-1");
        assert_eq!(
            xml,
            "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"LR-1\" Version=\"2.0\" IssueInstant=\"2024-05-01T12:00:00Z\"><saml:NameID xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">a&lt;b</saml:NameID><samlp:SessionIndex>ST-1</samlp:SessionIndex></samlp:LogoutRequest>"
        );
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(element_name("1st"), "_1st");
        assert_eq!(element_name("a:b c"), "a_b_c");
        assert_eq!(element_name("mail"), "mail");
        assert_eq!(element_name(""), "_");
        assert_eq!(
            element_name("²"),
            "_",
            "found by the property test: not an XML name char"
        );
        assert_eq!(element_name("café"), "café");
    }
}

#[cfg(test)]
mod properties {
    //! Whatever the values, the documents are well-formed and read back to the same data.
    use proptest::prelude::*;
    use time::OffsetDateTime;

    use super::*;
    use crate::protocol::{ErrorCode, StandardAttributes};

    fn text_of(node: roxmltree::Node<'_, '_>) -> String {
        node.text().unwrap_or_default().to_owned()
    }

    proptest! {
        #[test]
        fn success_documents_are_well_formed_and_faithful(
            user in any::<String>(),
            attributes in proptest::collection::btree_map(any::<String>(), proptest::collection::vec(any::<String>(), 1..3), 0..4),
            proxies in proptest::collection::vec(any::<String>(), 0..3),
        ) {
            let success = ValidationSuccess {
                user: user.clone(),
                attributes: Some((
                    StandardAttributes {
                        authentication_date: OffsetDateTime::UNIX_EPOCH,
                        long_term_authentication_request_token_used: false,
                        is_from_new_login: true,
                    },
                    attributes.clone(),
                )),
                proxy_granting_ticket: None,
                proxies: proxies.clone(),
            };
            let xml = authentication_success(&success);
            let doc = roxmltree::Document::parse(&xml).map_err(|e| TestCaseError::fail(format!("{e}: {xml}")))?;
            let ok = doc.root_element().first_element_child().unwrap();
            let user_node = ok.first_element_child().unwrap();
            prop_assert_eq!(text_of(user_node), xml_safe(&user).into_owned());
            let released: Vec<(String, String)> = ok
                .children()
                .find(|n| n.has_tag_name((CAS_NS, "attributes")))
                .unwrap()
                .children()
                .filter(|n| n.is_element())
                .skip(3)
                .map(|n| (n.tag_name().name().to_owned(), text_of(n)))
                .collect();
            let expected: Vec<(String, String)> = attributes
                .iter()
                .flat_map(|(name, values)| values.iter().map(move |v| (element_name(name), xml_safe(v.trim()).into_owned())))
                .collect();
            prop_assert_eq!(released, expected);
            let listed: Vec<String> = ok
                .children()
                .find(|n| n.has_tag_name((CAS_NS, "proxies")))
                .map(|p| p.children().filter(|n| n.is_element()).map(text_of).collect())
                .unwrap_or_default();
            let expected: Vec<String> = proxies.iter().map(|p| xml_safe(p).into_owned()).collect();
            prop_assert_eq!(listed, expected);
        }

        #[test]
        fn failure_documents_are_well_formed_and_faithful(description in any::<String>()) {
            let xml = authentication_failure(&Failure::new(ErrorCode::InvalidTicket, description.clone()));
            let doc = roxmltree::Document::parse(&xml).map_err(|e| TestCaseError::fail(format!("{e}: {xml}")))?;
            let failure = doc.root_element().first_element_child().unwrap();
            prop_assert_eq!(failure.attribute("code"), Some("INVALID_TICKET"));
            prop_assert_eq!(text_of(failure), xml_safe(&description).into_owned());
        }

        #[test]
        fn logout_requests_are_well_formed(name in any::<String>(), ticket in "ST-[A-Za-z0-9]{29}") {
            let xml = logout_request("LR-1", "2024-01-01T00:00:00Z", &name, &ticket);
            let doc = roxmltree::Document::parse(&xml).map_err(|e| TestCaseError::fail(format!("{e}: {xml}")))?;
            let root = doc.root_element();
            prop_assert_eq!(text_of(root.first_element_child().unwrap()), xml_safe(&name).into_owned());
            prop_assert!(!xml.contains('\n') || name.contains('\n'));
        }
    }
}
