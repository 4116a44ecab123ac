//! The format's rules, each as the attack it stops: tampering, another
//! key, a retired key, replays, serial reuse, hostile bytes.

use proptest::prelude::*;

use crate::*;

const SEED: &str = "9f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000001";
const POLICY: &str = "label = \"prod\"\n";
const NOW: u64 = 1_765_000_000;
const MAX: usize = 1 << 20;

fn public(seed: &str) -> String {
    palisade_policy::signature::public_key_of(seed).unwrap()
}

fn trust(entries: &[String]) -> TrustStore {
    TrustStore::parse(entries).unwrap()
}

fn signed(serial: u64, policy: &str) -> Vec<u8> {
    Bundle::build(BuildInput {
        serial,
        policy_toml: policy.to_owned(),
        detector_artifact: Some(b"model bytes".to_vec()),
        thresholds: Some(ThresholdOverrides {
            flag: 0.5,
            block: 0.8,
        }),
        link_allowlist: vec!["docs.example.com".to_owned()],
        ..BuildInput::default()
    })
    .unwrap()
    .sign(SEED, NOW - 10)
    .unwrap()
    .encode()
}

#[test]
fn a_signed_bundle_verifies_and_carries_its_parts() {
    let bytes = signed(7, POLICY);
    let v = verify(&bytes, &trust(&[public(SEED)]), NOW, MAX).unwrap();
    let m = v.manifest();
    assert_eq!((m.serial, m.created_at), (7, NOW - 10));
    assert_eq!(m.key_id, &public(SEED)[..16]);
    assert_eq!(v.detector_artifact(), Some(&b"model bytes"[..]));
    assert_eq!(v.digest().len(), 64);
    let policy = v.effective_policy_toml().unwrap();
    assert!(policy.contains("docs.example.com"), "{policy}");
    // The same content re-encoded is the same bundle.
    let again = Bundle::decode(&bytes, MAX).unwrap().encode();
    assert_eq!(
        verify(&again, &trust(&[public(SEED)]), NOW, MAX)
            .unwrap()
            .digest(),
        v.digest()
    );
}

#[test]
fn unsigned_untrusted_and_edited_bundles_are_refused() {
    let keys = trust(&[public(SEED)]);
    let unsigned = Bundle::build(BuildInput {
        serial: 1,
        policy_toml: POLICY.to_owned(),
        ..BuildInput::default()
    })
    .unwrap()
    .encode();
    assert_eq!(
        verify(&unsigned, &keys, NOW, MAX),
        Err(BundleError::Unsigned)
    );
    let bytes = signed(1, POLICY);
    assert!(matches!(
        verify(&bytes, &trust(&[public(OTHER)]), NOW, MAX),
        Err(BundleError::UntrustedKey(_))
    ));
    // Another key claiming the trusted key's id.
    let forged = String::from_utf8(
        Bundle::build(BuildInput {
            serial: 2,
            policy_toml: POLICY.to_owned(),
            ..BuildInput::default()
        })
        .unwrap()
        .sign(OTHER, NOW)
        .unwrap()
        .encode(),
    )
    .unwrap()
    .replace(&public(OTHER)[..16], &public(SEED)[..16]);
    assert_eq!(
        verify(forged.as_bytes(), &keys, NOW, MAX),
        Err(BundleError::BadSignature)
    );
    // Editing a signed field, with the policy digest fixed up.
    let text = String::from_utf8(bytes).unwrap();
    let edited = text.replace("\"serial\":1", "\"serial\":9");
    assert_eq!(
        verify(edited.as_bytes(), &keys, NOW, MAX),
        Err(BundleError::BadSignature)
    );
    // An unknown member cannot ride along.
    let extra = text.replacen("{\"manifest\":{", "{\"manifest\":{\"extra\":1,", 1);
    assert!(matches!(
        verify(extra.as_bytes(), &keys, NOW, MAX),
        Err(BundleError::Malformed(_))
    ));
    let v2 = text.replace("palisade-bundle-v1", "palisade-bundle-v2");
    assert!(matches!(
        verify(v2.as_bytes(), &keys, NOW, MAX),
        Err(BundleError::UnknownFormat(_))
    ));
}

#[test]
fn a_retired_key_verifies_only_inside_its_window() {
    let bytes = signed(3, POLICY); // signed at NOW - 10
    let until = |t: u64| trust(&[format!("{} not_after={t}", public(SEED))]);
    assert!(
        verify(&bytes, &until(NOW), NOW, MAX).is_ok(),
        "inside the window"
    );
    assert!(matches!(
        verify(&bytes, &until(NOW - 11), NOW - 20, MAX),
        Err(BundleError::KeyRetired { why, .. }) if why.contains("signed after")
    ));
    assert!(matches!(
        verify(&bytes, &until(NOW - 5), NOW, MAX),
        Err(BundleError::KeyRetired { why, .. }) if why.contains("closed")
    ));
    for bad in [
        "",
        "abc",
        &format!("{} until=5", public(SEED)),
        &format!("{} not_after=-1", public(SEED)),
        &format!("{} not_after=1 x", public(SEED)),
    ] {
        assert!(BundleKey::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn serials_only_rise_and_name_one_bundle() {
    let keys = trust(&[public(SEED)]);
    let v5 = verify(&signed(5, POLICY), &keys, NOW, MAX).unwrap();
    let running = Running {
        serial: 5,
        digest: v5.digest().to_owned(),
    };
    assert_eq!(check_successor(None, &v5), Ok(Succession::Upgrade));
    assert_eq!(
        check_successor(Some(&running), &v5),
        Ok(Succession::Unchanged)
    );
    let v4 = verify(&signed(4, POLICY), &keys, NOW, MAX).unwrap();
    assert_eq!(
        check_successor(Some(&running), &v4),
        Err(BundleError::OlderSerial {
            serial: 4,
            running: 5
        })
    );
    let other5 = verify(&signed(5, "label = \"other\"\n"), &keys, NOW, MAX).unwrap();
    assert_eq!(
        check_successor(Some(&running), &other5),
        Err(BundleError::SerialReuse { serial: 5 })
    );
    let v6 = verify(&signed(6, POLICY), &keys, NOW, MAX).unwrap();
    assert_eq!(
        check_successor(Some(&running), &v6),
        Ok(Succession::Upgrade)
    );
}

#[test]
fn bad_parts_are_typed_errors() {
    let bytes = signed(1, POLICY);
    assert_eq!(
        verify(&bytes, &trust(&[public(SEED)]), NOW, 100),
        Err(BundleError::TooLarge {
            size: bytes.len(),
            max: 100
        })
    );
    let text = String::from_utf8(bytes).unwrap();
    // The artifact swapped for other bytes.
    let start = text.find("\"detector_artifact\":\"").unwrap() + 21;
    let mut swapped = text.clone();
    swapped.replace_range(start..start + 4, "AAAA");
    assert_eq!(
        verify(swapped.as_bytes(), &trust(&[public(SEED)]), NOW, MAX),
        Err(BundleError::ContentMismatch("detector artifact"))
    );
    assert!(Bundle::build(BuildInput {
        thresholds: Some(ThresholdOverrides {
            flag: 0.9,
            block: 0.1
        }),
        ..BuildInput::default()
    })
    .is_err());
    assert!(Bundle::build(BuildInput {
        link_allowlist: vec!["evil.com/path".to_owned()],
        ..BuildInput::default()
    })
    .is_err());
}

proptest! {
    /// Any flipped byte of a signed bundle is refused (or, where JSON
    /// formatting absorbs it, verifies to the very same bundle), and never panics.
    #[test]
    fn any_tampered_byte_is_refused_or_harmless(index in any::<usize>(), xor in 1u8..=255) {
        let keys = trust(&[public(SEED)]);
        let bytes = signed(9, POLICY);
        let original = verify(&bytes, &keys, NOW, MAX).unwrap();
        let mut tampered = bytes.clone();
        let i = index % tampered.len();
        tampered[i] ^= xor;
        if let Ok(v) = verify(&tampered, &keys, NOW, MAX) {
            prop_assert_eq!(v.digest(), original.digest());
            prop_assert_eq!(v.detector_artifact(), original.detector_artifact());
        }
    }

    /// Truncations and arbitrary bytes are typed errors, never panics.
    #[test]
    fn truncated_or_random_input_is_a_typed_error(cut in any::<usize>(), noise in proptest::collection::vec(any::<u8>(), 0..512)) {
        let keys = trust(&[public(SEED)]);
        let bytes = signed(9, POLICY);
        let cut = cut % bytes.len();
        prop_assert!(verify(&bytes[..cut], &keys, NOW, MAX).is_err());
        prop_assert!(verify(&noise, &keys, NOW, MAX).is_err());
    }
}

#[test]
fn freshness_refuses_below_the_floor_too_old_and_from_the_future() {
    let keys = trust(&[public(SEED)]);
    // `signed` signs at NOW - 10.
    let v5 = verify(&signed(5, POLICY), &keys, NOW, MAX).unwrap();
    let rules = |min_serial, max_age_s| Freshness {
        min_serial,
        max_age_s,
    };
    let table: &[(Freshness, u64, Result<(), &str>)] = &[
        (Freshness::default(), NOW, Ok(())),
        (rules(5, None), NOW, Ok(())),
        (rules(6, None), NOW, Err("floor")),
        (rules(0, Some(10)), NOW, Ok(())),
        (rules(0, Some(9)), NOW, Err("too old")),
        (rules(0, Some(3600)), NOW + 3591, Err("too old")),
        (rules(0, Some(3600)), NOW - 10 - FUTURE_SKEW_S, Ok(())),
        (
            rules(0, Some(3600)),
            NOW - 11 - FUTURE_SKEW_S,
            Err("dated in the future"),
        ),
    ];
    for (rule, now, want) in table {
        let got = check_fresh(&v5, *rule, *now);
        match (want, &got) {
            (Ok(()), Ok(())) => {}
            (Err("floor"), Err(BundleError::BelowMinSerial { serial: 5, .. })) => {}
            (Err(why), Err(BundleError::Stale { why: got_why, .. })) if why == got_why => {}
            _ => panic!("{rule:?} at {now}: want {want:?}, got {got:?}"),
        }
    }
}
