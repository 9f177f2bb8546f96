//! CAS 3 JSON documents (`format=JSON`, FMT-20..24).
//!
//! Our rule for FMT-23: released user attributes are always arrays (an attribute may be
//! multi-valued, and a client should not have to guess), while the three standard
//! attributes are typed scalars as in the spec's example. Keys without a value are omitted.

use serde_json::{Map, Value, json};

use super::{Failure, ValidationSuccess, format_date};

pub fn authentication_success(success: &ValidationSuccess) -> String {
    let mut body = Map::new();
    body.insert("user".into(), Value::String(success.user.clone()));
    if let Some(iou) = &success.proxy_granting_ticket {
        body.insert("proxyGrantingTicket".into(), Value::String(iou.clone()));
    }
    if !success.proxies.is_empty() {
        // FMT-22: the same order as XML, most recent first.
        body.insert("proxies".into(), json!(success.proxies));
    }
    if let Some((standard, released)) = &success.attributes {
        let mut attributes = Map::new();
        attributes.insert(
            "authenticationDate".into(),
            Value::String(format_date(standard.authentication_date)),
        );
        attributes.insert(
            "longTermAuthenticationRequestTokenUsed".into(),
            Value::Bool(standard.long_term_authentication_request_token_used),
        );
        attributes.insert(
            "isFromNewLogin".into(),
            Value::Bool(standard.is_from_new_login),
        );
        for (name, values) in released {
            let values: Vec<&str> = values.iter().map(|v| v.trim()).collect();
            attributes.insert(name.clone(), json!(values));
        }
        body.insert("attributes".into(), Value::Object(attributes));
    }
    json!({ "serviceResponse": { "authenticationSuccess": body } }).to_string()
}

/// FMT-21.
pub fn authentication_failure(failure: &Failure) -> String {
    json!({ "serviceResponse": { "authenticationFailure": {
        "code": failure.code.as_str(),
        "description": failure.description,
    } } })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::OffsetDateTime;

    use super::*;
    use crate::protocol::{ErrorCode, StandardAttributes};

    #[test]
    fn success_and_failure_have_the_spec_shape() {
        let mut released = BTreeMap::new();
        released.insert("mail".to_owned(), vec!["a@b".to_owned()]);
        let s = ValidationSuccess {
            user: "jdoe".into(),
            attributes: Some((
                StandardAttributes {
                    authentication_date: OffsetDateTime::UNIX_EPOCH,
                    long_term_authentication_request_token_used: false,
                    is_from_new_login: true,
                },
                released,
            )),
            proxy_granting_ticket: None,
            proxies: vec![],
        };
        let v: Value = serde_json::from_str(&authentication_success(&s)).unwrap();
        let ok = &v["serviceResponse"]["authenticationSuccess"];
        assert_eq!(ok["user"], "jdoe");
        assert_eq!(ok["attributes"]["mail"], json!(["a@b"]));
        assert_eq!(ok["attributes"]["isFromNewLogin"], json!(true));
        assert!(ok.get("proxyGrantingTicket").is_none());

        let f: Value = serde_json::from_str(&authentication_failure(&Failure::new(
            ErrorCode::InvalidTicket,
            "gone",
        )))
        .unwrap();
        assert_eq!(
            f["serviceResponse"]["authenticationFailure"]["code"],
            "INVALID_TICKET"
        );
        assert_eq!(
            f["serviceResponse"]["authenticationFailure"]["description"],
            "gone"
        );
    }
}
