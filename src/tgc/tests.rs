use std::path::Path;

use super::*;

fn codec(mode: CryptoMode) -> TgcCodec {
    TgcCodec::new(&[TgcKeys::generate()], mode, true).unwrap()
}

fn remembered(c: &TgcCodec) -> usize {
    c.opened
        .shards
        .iter()
        .map(|s| s.lock().unwrap().len())
        .sum()
}

#[test]
fn a_remembered_cookie_is_still_pinned_and_only_authentic_ones_are_remembered() {
    let c = codec(CryptoMode::EncryptAndSign);
    let v = c.encode("TGT-1", "10.0.0.1", "UA").unwrap();
    assert_eq!(c.decode(&v, "10.0.0.1", "UA").unwrap(), "TGT-1");
    assert_eq!(remembered(&c), 1);
    assert!(matches!(
        c.decode(&v, "10.0.0.2", "UA"),
        Err(TgcError::IpMismatch)
    ));
    assert!(matches!(
        c.decode(&v, "10.0.0.1", "Other"),
        Err(TgcError::UserAgentMismatch)
    ));
    let mut forged = v.into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(c.decode(&forged, "10.0.0.1", "UA").is_err());
    assert!(c.decode("x.y.z", "10.0.0.1", "UA").is_err());
    assert_eq!(remembered(&c), 1, "failures are never remembered");
}

#[test]
fn remembered_cookies_are_bounded() {
    let c = codec(CryptoMode::SignAndEncrypt);
    let limit = OPENED_SHARDS * OPENED_PER_SHARD;
    for i in 0..limit + 2000 {
        let v = c.encode(&format!("TGT-{i}"), "10.0.0.1", "UA").unwrap();
        c.decode(&v, "10.0.0.1", "UA").unwrap();
    }
    assert!(remembered(&c) <= limit);
    assert!(remembered(&c) > limit / 2);
}

#[test]
fn round_trips_in_both_modes_and_hides_the_tgt() {
    for mode in [CryptoMode::EncryptAndSign, CryptoMode::SignAndEncrypt] {
        let c = codec(mode);
        let v = c
            .encode("TGT-abc", "10.0.0.1", "Mozilla/5.0 (x@y)")
            .unwrap();
        assert!(!v.contains("TGT-abc"));
        assert_eq!(
            c.decode(&v, "10.0.0.1", "Mozilla/5.0 (x@y)").unwrap(),
            "TGT-abc"
        );
    }
}

#[test]
fn pinned_cookie_refuses_another_ip_or_user_agent() {
    let c = codec(CryptoMode::EncryptAndSign);
    let v = c.encode("TGT-abc", "10.0.0.1", "UA").unwrap();
    assert_eq!(c.decode(&v, "10.0.0.2", "UA"), Err(TgcError::IpMismatch));
    assert_eq!(
        c.decode(&v, "10.0.0.1", "UA2"),
        Err(TgcError::UserAgentMismatch)
    );
    let unpinned =
        TgcCodec::new(&[TgcKeys::generate()], CryptoMode::EncryptAndSign, false).unwrap();
    let v = unpinned.encode("TGT-abc", "10.0.0.1", "UA").unwrap();
    assert_eq!(unpinned.decode(&v, "10.0.0.2", "UA2").unwrap(), "TGT-abc");
}

#[test]
fn tampered_or_foreign_cookies_are_refused() {
    let c = codec(CryptoMode::EncryptAndSign);
    let v = c.encode("TGT-abc", "ip", "ua").unwrap();
    let mut bytes = v.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(c.decode(&tampered, "ip", "ua").is_err());
    assert!(
        codec(CryptoMode::EncryptAndSign)
            .decode(&v, "ip", "ua")
            .is_err()
    );
    assert_eq!(c.decode("garbage", "ip", "ua"), Err(TgcError::Malformed));
    assert_eq!(c.decode("", "ip", "ua"), Err(TgcError::Malformed));
}

#[test]
fn rotated_keys_still_read_old_cookies_and_write_with_the_new_one() {
    let old = TgcKeys::generate();
    let new = TgcKeys::generate();
    let before =
        TgcCodec::new(std::slice::from_ref(&old), CryptoMode::EncryptAndSign, true).unwrap();
    let during = TgcCodec::new(&[new.clone(), old], CryptoMode::EncryptAndSign, true).unwrap();
    let after = TgcCodec::new(&[new], CryptoMode::EncryptAndSign, true).unwrap();
    let old_cookie = before.encode("TGT-a", "ip", "ua").unwrap();
    assert_eq!(during.decode(&old_cookie, "ip", "ua").unwrap(), "TGT-a");
    let new_cookie = during.encode("TGT-b", "ip", "ua").unwrap();
    assert_eq!(after.decode(&new_cookie, "ip", "ua").unwrap(), "TGT-b");
    assert_eq!(
        after.decode(&old_cookie, "ip", "ua"),
        Err(TgcError::BadSignature)
    );
    assert!(TgcCodec::new(&[], CryptoMode::EncryptAndSign, true).is_err());
}

#[test]
fn keys_of_the_wrong_length_are_named() {
    let e =
        TgcKeys::from_base64(&b64url_encode(&[0u8; 16]), &b64url_encode(&[0u8; 64])).unwrap_err();
    assert_eq!(e.key(), KeyName::Encryption);
    assert!(
        e.to_string().contains("encryption_key must be 32 bytes"),
        "{e}"
    );
    let k = TgcKeys::generate();
    let text = k.to_config();
    let back = TgcKeys::parse_key_file(&text, Path::new("keys.toml")).unwrap();
    assert_eq!(back.signing, k.signing);
}

#[test]
fn key_file_is_created_once_with_private_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    let (k1, created) = TgcKeys::load_or_create(&path).unwrap();
    assert!(created);
    let (k2, created) = TgcKeys::load_or_create(&path).unwrap();
    assert!(!created);
    assert_eq!(k1.encryption, k2.encryption);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// A syntax error in the key file is reported by line and column, never by quoting the
/// line, which may hold a key; nor does the cause chain quote it.
#[test]
fn a_broken_key_file_is_reported_without_its_keys() {
    let secret = b64url_encode(&TgcKeys::generate().signing);
    let text = format!("encryption_key = \"{secret}\nsigning_key = 1\n");
    let e = TgcKeys::parse_key_file(&text, Path::new("/etc/cas/tgc-keys.toml")).unwrap_err();
    let mut chain = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    assert!(
        chain[0].starts_with("/etc/cas/tgc-keys.toml: not a valid key file: line 1, column"),
        "{chain:?}"
    );
    assert!(
        chain.iter().all(|m| !m.contains(&secret[..20])),
        "{chain:?}"
    );
    let KeyFileError::Syntax { source, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(
        source.toml().to_string().contains(&secret[..20]),
        "the parser's own message quotes it"
    );
}

/// The key file's other refusals name the file and carry their cause.
#[test]
fn key_file_errors_name_the_file_and_keep_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let weak = dir.path().join("weak.toml");
    std::fs::write(
        &weak,
        format!(
            "encryption_key = \"{}\"\nsigning_key = \"{}\"\n",
            b64url_encode(&[1; 32]),
            b64url_encode(&TgcKeys::generate().signing)
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&weak, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let e = TgcKeys::load_or_create(&weak).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}: encryption_key is not a random key",
            weak.display()
        )),
        "{e}"
    );
    assert!(matches!(
        std::error::Error::source(&e).and_then(|s| s.downcast_ref::<KeyError>()),
        Some(KeyError::NotRandom {
            key: KeyName::Encryption
        })
    ));

    let missing_dir = dir.path().join("absent").join("keys.toml");
    let e = TgcKeys::load_or_create(&missing_dir).unwrap_err();
    assert!(matches!(e, KeyFileError::Create { .. }), "{e:?}");
    assert!(
        e.to_string().contains("cannot create the TGC key file"),
        "{e}"
    );
    assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()));
}
