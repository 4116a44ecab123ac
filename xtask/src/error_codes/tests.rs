//! Tests of the `ErrorCode` source parser and the README check.

use super::*;

const SRC: &str = r#"
/// Codes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Bad input `{like this}`.
    InvalidRequest,
    /// Gone.
    ModelNotFound,
    #[serde(rename = "teapot")]
    IAmATeapot,
}

impl ErrorCode {
    pub const fn status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400, // a comment with Self::IAmATeapot => 1
            Self::ModelNotFound
            | ErrorCode::IAmATeapot => 404,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::ModelNotFound => "model_not_found",
            Self::IAmATeapot => "teapot",
        }
    }
}
"#;

fn spec(variant: &str, wire: &str, status: u16) -> ErrorCodeSpec {
    ErrorCodeSpec {
        variant: variant.into(),
        serde_name: wire.into(),
        wire: Some(wire.into()),
        status: Some(status),
    }
}

#[test]
fn parses_variants_wire_names_and_statuses() {
    let specs = parse(Path::new("e.rs"), SRC).unwrap();
    assert_eq!(
        specs,
        vec![
            spec("InvalidRequest", "invalid_request", 400),
            spec("ModelNotFound", "model_not_found", 404),
            spec("IAmATeapot", "teapot", 404),
        ]
    );
    assert!(check_source(Path::new("e.rs"), &specs).is_empty());
}

#[test]
fn missing_arms_and_serde_disagreement_are_reported() {
    let src = SRC
        .replace(
            "Self::ModelNotFound => \"model_not_found\"",
            "Self::ModelNotFound => \"no_model\"",
        )
        .replace("Self::InvalidRequest => 400,", "");
    let specs = parse(Path::new("e.rs"), &src).unwrap();
    let found: Vec<String> = check_source(Path::new("e.rs"), &specs)
        .into_iter()
        .map(|v| v.detail)
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("InvalidRequest has no numeric arm in `status`"));
    assert!(found[1].contains("`as_str` says \"no_model\" but serde says \"model_not_found\""));
}

#[test]
fn a_changed_shape_fails_loudly() {
    assert!(parse(Path::new("e.rs"), "pub enum Other {}").is_err());
    let no_as_str = SRC.replace("fn as_str(", "fn name(");
    let err = parse(Path::new("e.rs"), &no_as_str).unwrap_err();
    assert!(err.to_string().contains("no `fn as_str`"), "{err}");
}

#[test]
fn readme_rows_must_name_each_code_with_its_status() {
    let specs = parse(Path::new("e.rs"), SRC).unwrap();
    let readme = "\
# Title
`model_not_found` mentioned outside the section does not count.
### Errors
| code | status | when |
|---|---|---|
| `invalid_request` | 400 | bad |
| `model_not_found` | 410 | gone |
#### Policy codes
| `teapot` | 404 | nested sub-sections count |
### Next
| `model_not_found` | 404 | another section does not count |
";
    let found: Vec<String> = check_readme(Path::new("README.md"), readme, &specs)
        .into_iter()
        .map(|v| v.detail)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("`model_not_found`: the `Errors` table does not give its status 404"));

    let without = readme.replace("| `invalid_request` | 400 | bad |\n", "");
    let found = check_readme(Path::new("README.md"), &without, &specs);
    assert!(found[0]
        .detail
        .contains("`invalid_request` (ErrorCode::InvalidRequest, status 400) has no row"));
}

#[test]
fn a_readme_without_the_section_is_one_violation() {
    let specs = parse(Path::new("e.rs"), SRC).unwrap();
    let found = check_readme(Path::new("README.md"), "# Title\n### Errorsome\n", &specs);
    assert_eq!(found.len(), 1);
    assert!(found[0].detail.contains("no `Errors` section"));
}

#[test]
fn snake_case_matches_serde() {
    assert_eq!(
        to_snake_case("UpstreamInvalidResponse"),
        "upstream_invalid_response"
    );
    assert_eq!(to_snake_case("A"), "a");
}
