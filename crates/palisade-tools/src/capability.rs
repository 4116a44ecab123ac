//! Capability tokens: the gateway's signed word that one specific tool call was released.
//!
//! Format: `pcap1.<claims>.<signature>`, where `<claims>` is the base64url (no padding) of
//! the claims' JSON and `<signature>` the base64url ed25519 signature of the ASCII bytes
//! `pcap1.<claims>`. The prefix versions the format; signing the prefix too means a token
//! cannot be re-labelled as another format.
//!
//! An executor checks a token with [`CapabilityVerifier::verify`] before it acts: the
//! signature, the expiry, and that the call it is about to run is the one the token names
//! (tool and SHA-256 of the canonical arguments, optionally the tenant). So a stolen token
//! is worth one call, of one tool, with the exact arguments that were checked, for a few
//! minutes.
//!
//! A token also says how the call reached the gateway ([`TokenSource`], the `src` claim):
//! judged in a proxied model response (no `src`), or submitted to the guard API by the
//! caller (`"src": "guard"`), where the caller chose the conversation the call was judged
//! in. An executor that only runs calls judged on a model's real output refuses `guard`.
//! Proxy tokens carry no `src` at all, so verifiers that predate the claim still accept
//! them, and refuse guard tokens (their claims schema denies unknown fields): old
//! executors fail closed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::canonical::arguments_sha256;

const PREFIX: &str = "pcap1.";
/// Longest token accepted: claims are a few hundred bytes; this bounds the work an
/// attacker can make a verifier do.
const MAX_TOKEN_LEN: usize = 4096;

/// What a capability token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityClaims {
    /// The tenant the call was released for.
    pub tenant: String,
    /// The tool's name.
    pub tool: String,
    /// Hex SHA-256 of the call's canonical arguments
    /// ([`arguments_sha256`](crate::arguments_sha256)).
    pub args_sha256: String,
    /// The gateway request that produced the call.
    pub request_id: String,
    /// The model's id for the call (`call_...`).
    pub call_id: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds (exclusive).
    pub exp: u64,
    /// Which signing key: the first 8 bytes of the public key, hex. Lets an executor that
    /// trusts several keys (during a rotation) pick the right one.
    pub kid: String,
    /// How the call reached the gateway. Absent from the JSON for [`TokenSource::Proxy`].
    #[serde(default, skip_serializing_if = "TokenSource::is_proxy")]
    pub src: TokenSource,
}

/// How a released call reached the gateway: the `src` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// In a model response the gateway proxied (or a held one of those, confirmed).
    #[default]
    Proxy,
    /// Submitted by the caller to `POST /v1/guard/tool_calls` (or a held one of those,
    /// confirmed): judged in the conversation the caller sent, which may not be the one
    /// the model saw.
    Guard,
}

impl TokenSource {
    /// `proxy` or `guard`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Proxy => "proxy",
            TokenSource::Guard => "guard",
        }
    }

    /// True for [`TokenSource::Proxy`] (the claim is then left out).
    pub fn is_proxy(&self) -> bool {
        *self == TokenSource::Proxy
    }
}

/// Why a token was refused. Each variant is a stable `code()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapabilityError {
    /// Not `pcap1.<claims>.<signature>`, bad base64, or claims that are not the schema.
    #[error("malformed capability token: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with this key (tampered, or another key's token).
    #[error("capability token signature does not verify")]
    BadSignature,
    /// Past `exp`.
    #[error("capability token expired at {exp} (now {now})")]
    Expired {
        /// The token's expiry.
        exp: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// Valid, but for another tool.
    #[error("capability token is for tool `{token}`, not `{call}`")]
    WrongTool {
        /// The tool in the token.
        token: String,
        /// The tool being called.
        call: String,
    },
    /// Valid, but for other arguments.
    #[error("capability token was issued for other arguments")]
    WrongArguments,
    /// Valid, but for another tenant.
    #[error("capability token belongs to another tenant")]
    WrongTenant,
    /// The arguments being checked are not JSON.
    #[error("the call's arguments are not valid JSON")]
    ArgumentsNotJson,
    /// A key that is not 32 bytes of hex (seed or public key).
    #[error("bad key: {0}")]
    BadKey(&'static str),
}

impl CapabilityError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CapabilityError::Malformed(_) => "token_malformed",
            CapabilityError::BadSignature => "token_bad_signature",
            CapabilityError::Expired { .. } => "token_expired",
            CapabilityError::WrongTool { .. } => "token_wrong_tool",
            CapabilityError::WrongArguments => "token_wrong_arguments",
            CapabilityError::WrongTenant => "token_wrong_tenant",
            CapabilityError::ArgumentsNotJson => "arguments_not_json",
            CapabilityError::BadKey(_) => "bad_key",
        }
    }
}

/// Issues tokens. Holds the private key; never log or serialize it.
pub struct CapabilitySigner {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for CapabilitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapabilitySigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn key_id(public: &VerifyingKey) -> String {
    hex::encode(&public.as_bytes()[..8])
}

fn hex32(text: &str, what: &'static str) -> Result<[u8; 32], CapabilityError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| CapabilityError::BadKey(what))?;
    Ok(bytes)
}

impl CapabilitySigner {
    /// A signer from a 32-byte ed25519 seed (the caller draws it from the OS or a file).
    pub fn from_seed(seed: [u8; 32]) -> CapabilitySigner {
        let key = SigningKey::from_bytes(&seed);
        let kid = key_id(&key.verifying_key());
        CapabilitySigner { key, kid }
    }

    /// A signer from a seed written as 64 hex digits (surrounding whitespace ignored).
    pub fn from_seed_hex(text: &str) -> Result<CapabilitySigner, CapabilityError> {
        Ok(CapabilitySigner::from_seed(hex32(
            text,
            "the signing seed must be 64 hex digits",
        )?))
    }

    /// The public key as 64 hex digits, for executors.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The key id tokens carry.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// A verifier for this signer's own tokens.
    pub fn verifier(&self) -> CapabilityVerifier {
        CapabilityVerifier {
            key: self.key.verifying_key(),
        }
    }

    /// Signs a token for one call. `claims.kid` is overwritten with this key's id.
    pub fn sign(&self, mut claims: CapabilityClaims) -> String {
        claims.kid.clone_from(&self.kid);
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let mut token = String::with_capacity(PREFIX.len() + json.len() * 4 / 3 + 100);
        token.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        token
    }
}

/// Checks tokens with a public key. Cheap to clone and share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityVerifier {
    key: VerifyingKey,
}

/// The call an executor is about to run, to compare with the token.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The tool's name.
    pub tool: &'a str,
    /// The arguments exactly as the executor will use them (a JSON string).
    pub arguments: &'a str,
    /// The tenant, when the executor knows it.
    pub tenant: Option<&'a str>,
}

impl CapabilityVerifier {
    /// A verifier from a public key written as 64 hex digits.
    pub fn from_public_hex(text: &str) -> Result<CapabilityVerifier, CapabilityError> {
        let bytes = hex32(text, "the public key must be 64 hex digits")?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| CapabilityError::BadKey("not an ed25519 public key"))?;
        Ok(CapabilityVerifier { key })
    }

    /// Checks the signature and the expiry (`now`, Unix seconds), and returns the claims.
    /// Does not compare them with a call: use [`verify_call`](Self::verify_call) before
    /// acting.
    pub fn verify(&self, token: &str, now: u64) -> Result<CapabilityClaims, CapabilityError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(CapabilityError::Malformed("token too long"));
        }
        let body = token
            .strip_prefix(PREFIX)
            .ok_or(CapabilityError::Malformed("missing pcap1. prefix"))?;
        let (claims_b64, sig_b64) = body
            .split_once('.')
            .ok_or(CapabilityError::Malformed("missing signature"))?;
        let sig_bytes: [u8; 64] = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CapabilityError::Malformed("bad signature encoding"))?;
        let signed = &token[..PREFIX.len() + claims_b64.len()];
        self.key
            .verify(signed.as_bytes(), &Signature::from_bytes(&sig_bytes))
            .map_err(|_| CapabilityError::BadSignature)?;
        // Only signed bytes are parsed.
        let json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| CapabilityError::Malformed("bad claims encoding"))?;
        let claims: CapabilityClaims = serde_json::from_slice(&json)
            .map_err(|_| CapabilityError::Malformed("claims do not match the schema"))?;
        if now >= claims.exp {
            return Err(CapabilityError::Expired {
                exp: claims.exp,
                now,
            });
        }
        Ok(claims)
    }

    /// [`verify`](Self::verify), then checks that the token covers exactly this call.
    pub fn verify_call(
        &self,
        token: &str,
        call: Expected<'_>,
        now: u64,
    ) -> Result<CapabilityClaims, CapabilityError> {
        let claims = self.verify(token, now)?;
        if claims.tool != call.tool {
            return Err(CapabilityError::WrongTool {
                token: claims.tool,
                call: call.tool.to_owned(),
            });
        }
        let hash =
            arguments_sha256(call.arguments).map_err(|_| CapabilityError::ArgumentsNotJson)?;
        if hash != claims.args_sha256 {
            return Err(CapabilityError::WrongArguments);
        }
        if call.tenant.is_some_and(|t| t != claims.tenant) {
            return Err(CapabilityError::WrongTenant);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(args: &str, exp: u64) -> CapabilityClaims {
        CapabilityClaims {
            tenant: "acme".into(),
            tool: "send_email".into(),
            args_sha256: arguments_sha256(args).unwrap(),
            request_id: "req-1".into(),
            call_id: "call_1".into(),
            iat: 1_000,
            exp,
            kid: String::new(),
            src: TokenSource::Proxy,
        }
    }

    const ARGS: &str = r#"{"to":"bob@example.com","body":"hi"}"#;

    fn call<'a>(tool: &'a str, arguments: &'a str) -> Expected<'a> {
        Expected {
            tool,
            arguments,
            tenant: Some("acme"),
        }
    }

    #[test]
    fn a_token_covers_exactly_one_call() {
        let signer = CapabilitySigner::from_seed([7; 32]);
        let verifier = CapabilityVerifier::from_public_hex(&signer.public_key_hex()).unwrap();
        let token = signer.sign(claims(ARGS, 1_300));
        let ok = verifier
            .verify_call(&token, call("send_email", ARGS), 1_100)
            .unwrap();
        assert_eq!(ok.kid, signer.key_id());
        // Same arguments, other layout: still the same call.
        let relaid = r#"{ "body": "hi", "to": "bob@example.com" }"#;
        assert!(verifier
            .verify_call(&token, call("send_email", relaid), 1_100)
            .is_ok());
        let other = r#"{"to":"eve@evil.example","body":"hi"}"#;
        assert_eq!(
            verifier.verify_call(&token, call("send_email", other), 1_100),
            Err(CapabilityError::WrongArguments)
        );
        assert!(matches!(
            verifier.verify_call(&token, call("delete_file", ARGS), 1_100),
            Err(CapabilityError::WrongTool { .. })
        ));
        assert_eq!(
            verifier.verify_call(&token, call("send_email", ARGS), 1_300),
            Err(CapabilityError::Expired {
                exp: 1_300,
                now: 1_300
            })
        );
        let mut foreign = call("send_email", ARGS);
        foreign.tenant = Some("globex");
        assert_eq!(
            verifier.verify_call(&token, foreign, 1_100),
            Err(CapabilityError::WrongTenant)
        );
    }

    #[test]
    fn tampering_and_foreign_keys_fail() {
        let signer = CapabilitySigner::from_seed([7; 32]);
        let verifier = signer.verifier();
        let token = signer.sign(claims(ARGS, 1_300));
        // Swap in claims for a longer expiry, keeping the old signature.
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&CapabilityClaims {
                kid: signer.key_id().into(),
                ..claims(ARGS, 9_999_999)
            })
            .unwrap(),
        );
        let sig = token.rsplit('.').next().unwrap();
        let forged = format!("{PREFIX}{forged_claims}.{sig}");
        assert_eq!(
            verifier.verify(&forged, 1_100),
            Err(CapabilityError::BadSignature)
        );
        // A token from another key.
        let other = CapabilitySigner::from_seed([8; 32]).sign(claims(ARGS, 1_300));
        assert_eq!(
            verifier.verify(&other, 1_100),
            Err(CapabilityError::BadSignature)
        );
        for junk in ["", "pcap1.", "pcap1.abc", "jwt.abc.def", "pcap1.!!.??"] {
            assert!(
                matches!(verifier.verify(junk, 0), Err(CapabilityError::Malformed(_))),
                "{junk}"
            );
        }
        assert!(verifier.verify(&"a".repeat(10_000), 0).is_err());
    }

    #[test]
    fn the_source_claim_tells_guard_tokens_apart() {
        let signer = CapabilitySigner::from_seed([7; 32]);
        let verifier = signer.verifier();
        let proxy = signer.sign(claims(ARGS, 1_300));
        let guard = signer.sign(CapabilityClaims {
            src: TokenSource::Guard,
            ..claims(ARGS, 1_300)
        });
        let decode = |t: &str| {
            let part = t.split('.').nth(1).unwrap();
            serde_json::from_slice::<serde_json::Value>(&URL_SAFE_NO_PAD.decode(part).unwrap())
                .unwrap()
        };
        // Proxy tokens keep the claims an older verifier knows; guard tokens say so.
        assert!(decode(&proxy).get("src").is_none());
        assert_eq!(decode(&guard)["src"], "guard");
        let call = call("send_email", ARGS);
        assert_eq!(
            verifier.verify_call(&proxy, call, 1_100).unwrap().src,
            TokenSource::Proxy
        );
        assert_eq!(
            verifier.verify_call(&guard, call, 1_100).unwrap().src,
            TokenSource::Guard
        );
    }

    #[test]
    fn keys_from_hex() {
        let signer = CapabilitySigner::from_seed_hex(&"0f".repeat(32)).unwrap();
        assert_eq!(signer.public_key_hex().len(), 64);
        assert!(CapabilitySigner::from_seed_hex("zz").is_err());
        assert!(CapabilityVerifier::from_public_hex("00").is_err());
    }
}
