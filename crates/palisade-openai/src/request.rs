//! Inspection of client request bodies.
//!
//! Palisade forwards requests it does not fully understand: upstreams add
//! fields every month (`reasoning_effort`, `logprobs`, vendor extensions) and a
//! gateway that drops them breaks clients. So a body is kept as a JSON object and
//! only the fields the gateway acts on are checked and read.

use serde_json::{Map, Value};

/// Longest `model` accepted, in bytes. Real model names are well under 100
/// bytes; the name is written into every log line, audit record and ledger
/// row of the request, so an unbounded one multiplies into hundreds of
/// megabytes per request.
pub const MAX_MODEL_BYTES: usize = 256;

/// Which OpenAI endpoint a body is for; decides the required fields.
/// The discriminants are dense so adapters can index per-endpoint tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`: needs `messages`.
    ChatCompletions = 0,
    /// `POST /v1/completions`: needs `prompt`.
    Completions = 1,
    /// `POST /v1/embeddings`: needs `input`.
    Embeddings = 2,
    /// `POST /v1/responses` (the Responses API): needs `input`.
    Responses = 3,
}

impl Endpoint {
    /// The path below the upstream's base URL (which ends in `/v1`).
    pub const fn upstream_path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Responses => "/responses",
        }
    }

    /// A short label for metrics and logs.
    pub const fn label(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
        }
    }

    /// The field that caps the completion's length on this endpoint.
    pub const fn max_tokens_field(self) -> &'static str {
        match self {
            Self::Responses => "max_output_tokens",
            _ => "max_tokens",
        }
    }

    const fn required_field(self) -> &'static str {
        match self {
            Self::ChatCompletions => "messages",
            Self::Completions => "prompt",
            Self::Embeddings | Self::Responses => "input",
        }
    }
}

/// Why a body was refused. Each variant names the field at fault so the
/// client's error carries a `param`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The bytes are not JSON; the message carries serde's line and column.
    #[error("request body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but an array, string or number at the top level.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// A required field is absent.
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    /// A field that belongs to another endpoint (`prompt` in a chat request,
    /// `messages` in a completions request): the gates read each endpoint's
    /// own fields, so a body carrying both is refused rather than half read.
    #[error("field `{0}` does not belong to this endpoint")]
    Foreign(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field at fault.
        field: &'static str,
        /// What it should have been, in words.
        expected: &'static str,
    },
    /// A member name that is not its own case fold (`Messages`, `meſſages`
    /// with U+017F): servers that match names case-insensitively (Go's
    /// `encoding/json`, as Ollama binds requests) read it as the field the
    /// gates judged under its exact name, or instead of it.
    #[error(
        "member `{0}` is written in another case than the field it names; OpenAI fields are \
         lower case"
    )]
    FoldedName(String),
    /// A string field is longer than the gateway accepts.
    #[error("field `{field}` is longer than {max} bytes")]
    TooLong {
        /// The field at fault.
        field: &'static str,
        /// The limit, in bytes.
        max: usize,
    },
}

impl InspectError {
    /// The request field at fault, if any.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::Missing(f) | Self::Foreign(f) => Some(f),
            Self::WrongType { field, .. } | Self::TooLong { field, .. } => Some(field),
            Self::Malformed(_) | Self::NotAnObject | Self::FoldedName(_) => None,
        }
    }
}

/// Checks a client's `model` string: non-empty and at most
/// [`MAX_MODEL_BYTES`]. Every endpoint that takes a `model` (the guard APIs
/// too) checks it before the name is logged, labelled or routed.
pub fn check_model(model: &str) -> Result<(), InspectError> {
    if model.is_empty() {
        return Err(InspectError::WrongType {
            field: "model",
            expected: "a non-empty string",
        });
    }
    if model.len() > MAX_MODEL_BYTES {
        return Err(InspectError::TooLong {
            field: "model",
            max: MAX_MODEL_BYTES,
        });
    }
    Ok(())
}

/// Most choices one request may ask for (`n`, `best_of`): OpenAI's own
/// limit.
pub const MAX_CHOICES: u64 = 128;

/// The fields the token budget reads as counts must be JSON integers: an
/// upstream that coerces `30000.0` or `"30000"` (vLLM and SGLang do) would
/// otherwise generate what the budget, reading no number there, never
/// reserved, and a streamed `n: 2.0` would pass the one-choice rule.
fn check_counts(fields: &Map<String, Value>) -> Result<(), InspectError> {
    const LIMITS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];
    for field in LIMITS {
        match fields.get(field) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64().is_some() => {}
            Some(_) => {
                return Err(InspectError::WrongType {
                    field,
                    expected: "a non-negative integer",
                })
            }
        }
    }
    for field in ["n", "best_of"] {
        match fields.get(field) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64().is_some_and(|n| (1..=MAX_CHOICES).contains(&n)) => {}
            Some(_) => {
                return Err(InspectError::WrongType {
                    field,
                    expected: "an integer from 1 to 128",
                })
            }
        }
    }
    Ok(())
}

/// The fold Go's `encoding/json` applies when it matches member names:
/// ASCII case, and the two non-ASCII letters whose simple fold is ASCII
/// (U+017F LONG S → `s`, U+212A KELVIN SIGN → `k`).
fn folded(name: &str) -> Option<String> {
    let fold: String = name
        .chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    (fold != name && fold.is_ascii()).then_some(fold)
}

/// Refuses member names (top level, messages or input items, their content
/// parts) that fold to another name: see [`InspectError::FoldedName`].
fn check_folded_names(fields: &Map<String, Value>) -> Result<(), InspectError> {
    let check = |map: &Map<String, Value>| -> Result<(), InspectError> {
        match map.keys().find(|k| folded(k).is_some()) {
            Some(k) => Err(InspectError::FoldedName(k.chars().take(64).collect())),
            None => Ok(()),
        }
    };
    check(fields)?;
    for list in ["messages", "input"] {
        let Some(Value::Array(items)) = fields.get(list) else {
            continue;
        };
        for item in items.iter().filter_map(Value::as_object) {
            check(item)?;
            if let Some(Value::Array(parts)) = item.get("content") {
                for part in parts.iter().filter_map(Value::as_object) {
                    check(part)?;
                }
            }
        }
    }
    Ok(())
}

/// A validated request body: a JSON object with a string `model` and the
/// endpoint's required field present.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBody {
    endpoint: Endpoint,
    fields: Map<String, Value>,
}

impl RequestBody {
    /// Parses and checks `bytes` for `endpoint`.
    pub fn parse(endpoint: Endpoint, bytes: &[u8]) -> Result<Self, InspectError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| InspectError::Malformed(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(InspectError::NotAnObject);
        };
        match fields.get("model") {
            None => return Err(InspectError::Missing("model")),
            Some(Value::String(m)) => check_model(m)?,
            Some(_) => {
                return Err(InspectError::WrongType {
                    field: "model",
                    expected: "a non-empty string",
                })
            }
        }
        match fields.get("stream") {
            None | Some(Value::Bool(_)) | Some(Value::Null) => {}
            Some(_) => {
                return Err(InspectError::WrongType {
                    field: "stream",
                    expected: "a boolean",
                })
            }
        }
        check_counts(&fields)?;
        check_folded_names(&fields)?;
        // A background response is generated after the POST returns: the
        // output gate would never see it and the token budget would settle
        // at the prompt alone (its usage arrives with a later GET).
        if endpoint == Endpoint::Responses
            && fields
                .get("background")
                .is_some_and(|b| b != &Value::Bool(false) && !b.is_null())
        {
            return Err(InspectError::WrongType {
                field: "background",
                expected: "false or absent (the gateway judges and counts what it relays)",
            });
        }
        let foreign: &[&'static str] = match endpoint {
            Endpoint::ChatCompletions => &["prompt"],
            Endpoint::Completions => &["messages"],
            Endpoint::Embeddings => &[],
            // The gates read `input` and `instructions`; a chat or legacy
            // field would be text an upstream might read and they would not.
            Endpoint::Responses => &["messages", "prompt"],
        };
        if let Some(f) = foreign.iter().find(|f| fields.contains_key(**f)) {
            return Err(InspectError::Foreign(f));
        }
        let required = endpoint.required_field();
        match (endpoint, fields.get(required)) {
            (_, None) => return Err(InspectError::Missing(required)),
            (Endpoint::ChatCompletions, Some(Value::Array(m))) if !m.is_empty() => {}
            (Endpoint::ChatCompletions, Some(_)) => {
                return Err(InspectError::WrongType {
                    field: "messages",
                    expected: "a non-empty array",
                })
            }
            (Endpoint::Responses, Some(Value::String(_) | Value::Array(_))) => {}
            (Endpoint::Responses, Some(_)) => {
                return Err(InspectError::WrongType {
                    field: "input",
                    expected: "a string or an array of input items",
                })
            }
            (_, Some(_)) => {}
        }
        Ok(Self { endpoint, fields })
    }

    /// The endpoint this body was checked for.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The requested model name (possibly an alias).
    pub fn model(&self) -> &str {
        self.fields
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Replaces the model name, e.g. to resolve an alias to the upstream's name.
    pub fn set_model(&mut self, model: &str) {
        self.fields
            .insert("model".to_owned(), Value::String(model.to_owned()));
    }

    /// True when the client asked for server-sent events.
    pub fn is_stream(&self) -> bool {
        self.endpoint != Endpoint::Embeddings
            && matches!(self.fields.get("stream"), Some(Value::Bool(true)))
    }

    /// Asks the upstream to end a stream with a usage chunk
    /// (`stream_options.include_usage`). Returns true when the client had not
    /// asked for it itself, so the gateway knows to keep that chunk from it.
    /// A Responses stream always ends with its usage (`response.completed`)
    /// and takes no `stream_options.include_usage`: nothing to ask there.
    pub fn ensure_stream_usage(&mut self) -> bool {
        if self.endpoint == Endpoint::Responses {
            return false;
        }
        ensure_stream_usage(&mut self.fields)
    }

    /// Sets the endpoint's completion limit (`max_tokens`, or
    /// `max_output_tokens` for the Responses API) when the client gave none.
    pub fn set_max_tokens_if_absent(&mut self, max_tokens: u64) -> bool {
        if crate::usage::requested_max_tokens(&self.fields).is_some() {
            return false;
        }
        self.fields.insert(
            self.endpoint.max_tokens_field().to_owned(),
            Value::from(max_tokens),
        );
        true
    }

    /// Lowers the completion limit to `cap` (every spelling of it goes, the
    /// endpoint's own is set).
    pub fn cap_max_tokens(&mut self, cap: u64) {
        self.fields.remove("max_completion_tokens");
        self.fields.remove("max_output_tokens");
        self.fields.insert(
            self.endpoint.max_tokens_field().to_owned(),
            Value::from(cap),
        );
    }

    /// The whole object, for later gates that read messages.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// Mutable access for gates that rewrite the request (hardening, caps).
    pub fn fields_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.fields
    }

    /// Serializes the body for the upstream.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A Map of Values always serializes.
        serde_json::to_vec(&self.fields).unwrap_or_default()
    }
}

/// Asks the upstream to end a stream with a usage chunk
/// (`stream_options.include_usage`) in a request's fields. Returns true when
/// the client had not asked for it itself, so the gateway knows to keep that
/// chunk from it.
pub fn ensure_stream_usage(fields: &mut Map<String, Value>) -> bool {
    let options = fields
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    let Value::Object(options) = options else {
        return false;
    };
    let asked = matches!(options.get("include_usage"), Some(Value::Bool(true)));
    options.insert("include_usage".to_owned(), Value::Bool(true));
    !asked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<RequestBody, InspectError> {
        RequestBody::parse(Endpoint::ChatCompletions, body.as_bytes())
    }

    #[test]
    fn accepts_minimal_chat_and_keeps_unknown_fields() {
        let b = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"vendor_x":1}"#)
            .unwrap();
        assert_eq!(b.model(), "m");
        assert!(!b.is_stream());
        let round: Value = serde_json::from_slice(&b.to_bytes()).unwrap();
        assert_eq!(round["vendor_x"], 1);
    }

    #[test]
    fn background_responses_are_refused() {
        let responses = |body: &str| RequestBody::parse(Endpoint::Responses, body.as_bytes());
        for bad in [
            r#""background":true"#,
            r#""background":"true""#,
            r#""background":1"#,
        ] {
            let err = responses(&format!(r#"{{"model":"m","input":"hi",{bad}}}"#)).unwrap_err();
            assert_eq!(err.param(), Some("background"), "{bad}");
        }
        for ok in [r#""background":false"#, r#""background":null"#] {
            assert!(responses(&format!(r#"{{"model":"m","input":"hi",{ok}}}"#)).is_ok());
        }
    }

    #[test]
    fn counts_the_budget_reads_must_be_integers() {
        let with = |extra: &str| {
            chat(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],{extra}}}"#
            ))
        };
        for ok in [
            r#""max_tokens":16"#,
            r#""max_completion_tokens":0"#,
            r#""n":1"#,
            r#""n":128,"best_of":128"#,
            r#""n":null,"max_tokens":null"#,
        ] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        for (bad, param) in [
            (r#""max_tokens":30000.0"#, "max_tokens"),
            (
                r#""max_completion_tokens":"30000""#,
                "max_completion_tokens",
            ),
            (r#""max_output_tokens":-1"#, "max_output_tokens"),
            (r#""max_tokens":1e9"#, "max_tokens"),
            (r#""n":2.0"#, "n"),
            (r#""n":"8""#, "n"),
            (r#""n":0"#, "n"),
            (r#""n":129"#, "n"),
            (r#""best_of":1000"#, "best_of"),
        ] {
            let err = with(bad).unwrap_err();
            assert_eq!(err.param(), Some(param), "{bad}: {err}");
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let check = |body: &str, param: Option<&str>| {
            let err = chat(body).unwrap_err();
            assert_eq!(err.param(), param, "{body}: {err}");
        };
        check("{", None);
        check("[1]", None);
        check(r#"{"messages":[{}]}"#, Some("model"));
        check(r#"{"model":3,"messages":[{}]}"#, Some("model"));
        check(r#"{"model":"","messages":[{}]}"#, Some("model"));
        let long = format!(r#"{{"model":"{}","messages":[{{}}]}}"#, "m".repeat(257));
        check(&long, Some("model"));
        let longest = format!(r#"{{"model":"{}","messages":[{{}}]}}"#, "m".repeat(256));
        assert!(chat(&longest).is_ok());
        check(r#"{"model":"m"}"#, Some("messages"));
        check(r#"{"model":"m","messages":[]}"#, Some("messages"));
        check(r#"{"model":"m","messages":"hi"}"#, Some("messages"));
        check(
            r#"{"model":"m","messages":[{}],"stream":"yes"}"#,
            Some("stream"),
        );
        check(
            r#"{"model":"m","messages":[{}],"prompt":[]}"#,
            Some("prompt"),
        );
        let completion = RequestBody::parse(
            Endpoint::Completions,
            br#"{"model":"m","prompt":"p","messages":[]}"#,
        );
        assert_eq!(completion.unwrap_err().param(), Some("messages"));
    }

    #[test]
    fn stream_flag_and_model_rewrite() {
        let mut b = chat(r#"{"model":"alias","messages":[{}],"stream":true}"#).unwrap();
        assert!(b.is_stream());
        b.set_model("real");
        let round: Value = serde_json::from_slice(&b.to_bytes()).unwrap();
        assert_eq!(round["model"], "real");
        assert_eq!(round["stream"], true);
    }

    #[test]
    fn stream_usage_is_requested_and_client_choice_remembered() {
        let mut b = chat(r#"{"model":"m","messages":[{}],"stream":true}"#).unwrap();
        assert!(b.ensure_stream_usage(), "client had not asked");
        assert_eq!(b.fields()["stream_options"]["include_usage"], true);
        let mut asked = chat(
            r#"{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(!asked.ensure_stream_usage());
        assert!(b.set_max_tokens_if_absent(64));
        assert!(!b.set_max_tokens_if_absent(99));
        assert_eq!(b.fields()["max_tokens"], 64);
    }

    #[test]
    fn embeddings_need_input_and_never_stream() {
        let err = RequestBody::parse(Endpoint::Embeddings, br#"{"model":"e"}"#).unwrap_err();
        assert_eq!(err, InspectError::Missing("input"));
        let b = RequestBody::parse(
            Endpoint::Embeddings,
            br#"{"model":"e","input":"x","stream":true}"#,
        )
        .unwrap();
        assert!(!b.is_stream());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = RequestBody::parse(Endpoint::ChatCompletions, &bytes);
        }
    }
}
