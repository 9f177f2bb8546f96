use std::path::Path;

use josekit::jwe::JweHeader;
use josekit::jws::JwsHeader;

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

/// The value the codec issued before TKT-01 was honoured, made as it made it: compact
/// JOSE, the inner token's text as the outer's payload.
fn legacy_cookie(keys: &TgcKeys, mode: CryptoMode, tgt: &str, ip: &str, ua: &str) -> String {
    let payload = format!("{tgt}@{ip}@{}", user_agent_pin(ua));
    let encrypt = |plain: &[u8]| {
        let mut header = JweHeader::new();
        header.set_content_encryption("A256GCM");
        let encrypter = Dir.encrypter_from_bytes(keys.encryption).unwrap();
        jwe::serialize_compact(plain, &header, &encrypter).unwrap()
    };
    let sign = |plain: &[u8]| {
        let signer = HS512.signer_from_bytes(keys.signing).unwrap();
        jws::serialize_compact(plain, &JwsHeader::new(), &signer).unwrap()
    };
    match mode {
        CryptoMode::EncryptAndSign => sign(encrypt(payload.as_bytes()).as_bytes()),
        CryptoMode::SignAndEncrypt => encrypt(sign(payload.as_bytes()).as_bytes()),
    }
}

const MODES: [CryptoMode; 2] = [CryptoMode::EncryptAndSign, CryptoMode::SignAndEncrypt];

/// TKT-01: the value holds only `A-Z a-z 0-9 -`, and is shorter than the compact JOSE
/// it replaces for the same session.
#[test]
fn the_value_is_in_the_ticket_alphabet_and_shorter_than_before() {
    let alphabet = regex::Regex::new("^TGC-[ES]-[A-Za-z0-9]+$").unwrap();
    let tgt = format!("TGT-{}", crate::crypto::random_base62(40));
    for mode in MODES {
        let keys = TgcKeys::generate();
        let c = TgcCodec::new(std::slice::from_ref(&keys), mode, true).unwrap();
        for ip in ["203.0.113.7", "2001:db8::1"] {
            let value = c.encode(&tgt, ip, "Mozilla/5.0").unwrap();
            let legacy = legacy_cookie(&keys, mode, &tgt, ip, "Mozilla/5.0");
            assert!(alphabet.is_match(&value), "{mode:?}: {value}");
            assert!(
                value.len() * 10 < legacy.len() * 7,
                "{mode:?}: {} against {} before",
                value.len(),
                legacy.len()
            );
        }
    }
}

/// Sessions started before the format changed survive it, still verified, decrypted and
/// pinned, and only with the keys that made them.
#[test]
fn cookies_of_the_earlier_format_are_still_read() {
    for mode in MODES {
        let keys = TgcKeys::generate();
        let c = TgcCodec::new(std::slice::from_ref(&keys), mode, true).unwrap();
        let old = legacy_cookie(&keys, mode, "TGT-old", "10.0.0.1", "UA");
        assert!(old.contains('.') && old.contains("eyJ"), "{old}");

        assert_eq!(c.decode(&old, "10.0.0.1", "UA").unwrap(), "TGT-old");
        assert_eq!(c.decode(&old, "10.0.0.2", "UA"), Err(TgcError::IpMismatch));
        assert_eq!(
            c.decode(&old, "10.0.0.1", "UA2"),
            Err(TgcError::UserAgentMismatch)
        );
        let mut tampered = old.clone().into_bytes();
        let at = tampered.len() / 2 + usize::from(tampered[tampered.len() / 2] == b'.');
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(c.decode(&tampered, "10.0.0.1", "UA").is_err(), "{mode:?}");
        let foreign = TgcCodec::new(&[TgcKeys::generate()], mode, true).unwrap();
        assert!(foreign.decode(&old, "10.0.0.1", "UA").is_err(), "{mode:?}");
        for bad in [
            format!("{old} "),
            format!("{old}%"),
            old.replace('.', "\\."),
        ] {
            assert_eq!(c.decode(&bad, "10.0.0.1", "UA"), Err(TgcError::Malformed));
        }
    }
}

/// TKT-01: a value with a character outside the alphabet, cut short, lengthened, or
/// carrying another layout's letter is refused before any key is tried; none of these
/// is remembered as authentic.
#[test]
fn values_outside_the_alphabet_truncated_or_of_another_layout_are_refused() {
    for mode in MODES {
        let c = codec(mode);
        let value = c.encode("TGT-a", "ip", "ua").unwrap();
        let body = value.len() - 20;
        for bad in ['_', '.', '+', '/', '=', ' ', '%', '~', '\u{e9}'] {
            let mut chars: Vec<char> = value.chars().collect();
            chars[body] = bad;
            let changed: String = chars.into_iter().collect();
            assert_eq!(
                c.decode(&changed, "ip", "ua"),
                Err(TgcError::Malformed),
                "{bad:?}"
            );
            let appended = format!("{value}{bad}");
            assert_eq!(c.decode(&appended, "ip", "ua"), Err(TgcError::Malformed));
        }
        for len in 0..value.len() {
            assert!(c.decode(&value[..len], "ip", "ua").is_err(), "cut to {len}");
        }
        assert!(c.decode(&format!("{value}0"), "ip", "ua").is_err());
        let other_layout = if value.starts_with("TGC-E-") {
            value.replacen("TGC-E-", "TGC-S-", 1)
        } else {
            value.replacen("TGC-S-", "TGC-E-", 1)
        };
        assert_eq!(
            c.decode(&other_layout, "ip", "ua"),
            Err(TgcError::Malformed)
        );
        assert_eq!(c.decode(&value, "ip", "ua").unwrap(), "TGT-a");
        assert_eq!(remembered(&c), 1, "{mode:?}");
    }
}

/// A value shorter than the fixed parts is refused unopened; one of the right length
/// made without the keys goes to josekit and fails there, whatever its bytes.
#[test]
fn forged_values_of_the_current_format_do_not_verify() {
    for (mode, fixed) in [
        (CryptoMode::EncryptAndSign, 12 + 16 + 64),
        (CryptoMode::SignAndEncrypt, 12 + 16),
    ] {
        let c = codec(mode);
        let letter = if mode == CryptoMode::EncryptAndSign {
            'E'
        } else {
            'S'
        };
        let forged = |bytes: &[u8]| format!("TGC-{letter}-{}", base62::encode(bytes));
        assert_eq!(
            c.decode(&forged(&vec![7; fixed]), "ip", "ua"),
            Err(TgcError::Malformed)
        );
        assert_eq!(c.decode(&forged(&[]), "ip", "ua"), Err(TgcError::Malformed));
        let expected = match mode {
            CryptoMode::EncryptAndSign => TgcError::BadSignature,
            CryptoMode::SignAndEncrypt => TgcError::DecryptFailed,
        };
        for len in [fixed + 1, fixed + 80] {
            let bytes = crate::crypto::random_bytes::<256>();
            assert_eq!(c.decode(&forged(&bytes[..len]), "ip", "ua"), Err(expected));
        }
    }
}

/// The headers left out of the cookie are re-attached as josekit writes them; if a
/// josekit upgrade wrote others, encoding would fail (here) rather than issue cookies
/// that cannot be read back.
#[test]
fn the_headers_left_out_are_the_ones_josekit_writes() {
    assert_eq!(
        wire::JWE_HEADER,
        b64url_encode(br#"{"enc":"A256GCM","alg":"dir"}"#)
    );
    assert_eq!(wire::JWS_HEADER, b64url_encode(br#"{"alg":"HS512"}"#));
    let keys = TgcKeys::generate();
    for mode in MODES {
        let legacy = legacy_cookie(&keys, mode, "TGT-a", "ip", "ua");
        let outer = legacy.split('.').next().unwrap();
        let expected = match mode {
            CryptoMode::EncryptAndSign => wire::JWS_HEADER,
            CryptoMode::SignAndEncrypt => wire::JWE_HEADER,
        };
        assert_eq!(outer, expected);
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
