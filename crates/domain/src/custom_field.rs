//! Custom field definitions of an organization and the validation of a contact's
//! `customFields` against them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{CustomFieldId, OrgId};
use crate::validation::{FieldIssue, UNKNOWN_FIELD};

/// A field key: `^[a-z][a-z0-9_]{0,49}$`. Immutable once defined.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FieldKey(String);

impl FieldKey {
    pub const MAX_CHARS: usize = 50;

    /// # Errors
    /// `invalid_format` unless it matches `^[a-z][a-z0-9_]{0,49}$`.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok && raw.len() <= Self::MAX_CHARS {
            Ok(Self(raw.to_owned()))
        } else {
            Err("invalid_format")
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Number,
    Date,
    Boolean,
    Select,
    Multiselect,
}

impl FieldType {
    pub const ALL: [Self; 6] = [
        Self::Text,
        Self::Number,
        Self::Date,
        Self::Boolean,
        Self::Select,
        Self::Multiselect,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Date => "date",
            Self::Boolean => "boolean",
            Self::Select => "select",
            Self::Multiselect => "multiselect",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    #[must_use]
    pub const fn has_options(self) -> bool {
        matches!(self, Self::Select | Self::Multiselect)
    }
}

/// What a definition says, validated: everything but its identity and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub key: FieldKey,
    pub label: String,
    pub field_type: FieldType,
    pub required: bool,
    /// The allowed values of `select` / `multiselect` (empty for other types).
    pub options: Vec<String>,
}

/// Limits of a definition.
pub const MAX_LABEL_CHARS: usize = 100;
pub const MAX_OPTIONS: usize = 100;
pub const MAX_OPTION_CHARS: usize = 100;
/// Definitions an organization may hold.
pub const MAX_DEFINITIONS: usize = 200;
/// Longest `text` value.
pub const MAX_TEXT_CHARS: usize = 1000;

impl FieldSpec {
    /// Validates a definition, collecting every problem.
    ///
    /// # Errors
    /// Bad key, blank or long label, options on a type without them, missing, blank,
    /// long, duplicate or too many options.
    pub fn new(
        key: &str,
        label: &str,
        field_type: FieldType,
        required: bool,
        options: &[String],
    ) -> Result<Self, Vec<FieldIssue>> {
        let mut issues = Vec::new();
        let key = FieldKey::parse(key)
            .map_err(|code| {
                issues.push(FieldIssue::new(
                    "key",
                    code,
                    "a key matches ^[a-z][a-z0-9_]{0,49}$",
                ))
            })
            .ok();
        let label = label.trim();
        if label.is_empty() {
            issues.push(FieldIssue::new("label", "required", "a label is required"));
        } else if label.chars().count() > MAX_LABEL_CHARS {
            issues.push(FieldIssue::new(
                "label",
                "too_long",
                "a label is at most 100 characters",
            ));
        } else if label.contains('\0') {
            issues.push(FieldIssue::new(
                "label",
                "invalid_format",
                crate::contact::NUL_REFUSED,
            ));
        }
        let mut clean = Vec::with_capacity(options.len());
        if field_type.has_options() {
            if options.is_empty() {
                issues.push(FieldIssue::new(
                    "options",
                    "required",
                    "select fields need at least one option",
                ));
            } else if options.len() > MAX_OPTIONS {
                issues.push(FieldIssue::new(
                    "options",
                    "too_many",
                    "at most 100 options",
                ));
            }
            let mut seen = BTreeSet::new();
            for (i, option) in options.iter().enumerate() {
                let option = option.trim();
                let field = format!("options[{i}]");
                if option.is_empty() {
                    issues.push(FieldIssue::new(
                        field,
                        "required",
                        "an option cannot be blank",
                    ));
                } else if option.chars().count() > MAX_OPTION_CHARS {
                    issues.push(FieldIssue::new(
                        field,
                        "too_long",
                        "an option is at most 100 characters",
                    ));
                } else if option.contains('\0') {
                    issues.push(FieldIssue::new(
                        field,
                        "invalid_format",
                        crate::contact::NUL_REFUSED,
                    ));
                } else if !seen.insert(option.to_owned()) {
                    issues.push(FieldIssue::new(field, "duplicate", "options are unique"));
                } else {
                    clean.push(option.to_owned());
                }
            }
        } else if !options.is_empty() {
            issues.push(FieldIssue::new(
                "options",
                "not_allowed",
                "only select and multiselect fields have options",
            ));
        }
        match key {
            Some(key) if issues.is_empty() => Ok(Self {
                key,
                label: label.to_owned(),
                field_type,
                required,
                options: clean,
            }),
            _ => Err(issues),
        }
    }
}

/// A stored definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomFieldDefinition {
    pub id: CustomFieldId,
    pub organization_id: OrgId,
    pub spec: FieldSpec,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a definition change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionChangeError {
    #[error("a field's key cannot change")]
    KeyChanged,
    #[error("a field's type cannot change while contacts hold values for it")]
    TypeChangeWithValues,
}

impl CustomFieldDefinition {
    /// Decides an update: the key is immutable and the type only changes while no
    /// contact holds a value (`values_exist`, asked of the store by the caller).
    ///
    /// # Errors
    /// [`DefinitionChangeError`].
    pub fn change(
        &self,
        spec: FieldSpec,
        values_exist: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Self>, DefinitionChangeError> {
        if spec.key != self.spec.key {
            return Err(DefinitionChangeError::KeyChanged);
        }
        if spec.field_type != self.spec.field_type && values_exist {
            return Err(DefinitionChangeError::TypeChangeWithValues);
        }
        if spec == self.spec {
            return Ok(None);
        }
        Ok(Some(Self {
            spec,
            version: self.version + 1,
            updated_at: now,
            ..self.clone()
        }))
    }
}

/// A contact's custom field values: key → JSON value, normalized by [`validate_values`].
pub type CustomFieldValues = BTreeMap<String, Value>;

/// Validates `values` (an object, as sent or as merge-patched) against `definitions`.
///
/// Unknown keys are rejected; each value must fit its field's type and options; a
/// `null`, blank text or empty multiselect means "no value". `required` fields must have
/// a value on create (`previous = None`) and cannot lose theirs on update. On update only
/// values that changed are checked against the current definitions, so narrowing a
/// select's options does not lock every contact holding an old value.
///
/// # Errors
/// Every problem, with `customFields.<key>` paths.
pub fn validate_values(
    values: &serde_json::Map<String, Value>,
    definitions: &[FieldSpec],
    previous: Option<&CustomFieldValues>,
) -> Result<CustomFieldValues, Vec<FieldIssue>> {
    let mut issues = Vec::new();
    let mut out = CustomFieldValues::new();
    for (key, value) in values {
        // Unchanged, it stays as stored, even when no definition names it any more (one
        // removed by hand in SQL, its values left behind): an edit of something else is
        // not refused for it. Sending it as `null` removes it.
        if previous.is_some_and(|p| p.get(key) == Some(value)) {
            out.insert(key.clone(), value.clone());
            continue;
        }
        let field = format!("customFields.{key}");
        let Some(def) = definitions.iter().find(|d| d.key.as_str() == key) else {
            issues.push(FieldIssue::new(
                field,
                UNKNOWN_FIELD,
                "no custom field has this key",
            ));
            continue;
        };
        match normalize_value(def, value) {
            Ok(Some(v)) => {
                out.insert(key.clone(), v);
            }
            Ok(None) => {}
            Err((code, message)) => issues.push(FieldIssue::new(field, code, message)),
        }
    }
    for def in definitions.iter().filter(|d| d.required) {
        let key = def.key.as_str();
        let had = previous.is_none_or(|p| p.contains_key(key));
        if had
            && !out.contains_key(key)
            && !issues
                .iter()
                .any(|i| i.field == format!("customFields.{key}"))
        {
            issues.push(FieldIssue::new(
                format!("customFields.{key}"),
                "required",
                "this custom field is required",
            ));
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

/// A date written exactly as `YYYY-MM-DD`: chrono's `%Y-%m-%d` alone also takes
/// leading spaces, signed or short years and one-digit months and days, which would
/// turn a typo such as `27-2-3` into the year 27.
fn calendar_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
}

/// `5.0`, `5e0` and `5` are one value: a whole number is kept as an integer, so that
/// writing it again in another form changes nothing (no new version, no event) and reads
/// back as it compares. Only below 2^53, where a float holds every whole number exactly.
fn canonical_number(n: &serde_json::Number) -> serde_json::Number {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match n.as_f64() {
        #[allow(clippy::cast_possible_truncation)] // whole and within ±2^53: exact
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < EXACT => {
            serde_json::Number::from(f as i64)
        }
        _ => n.clone(),
    }
}

fn normalize_value(
    def: &FieldSpec,
    value: &Value,
) -> Result<Option<Value>, (&'static str, String)> {
    let wrong = || {
        (
            "invalid_type",
            format!("expected a {} value", def.field_type.as_str()),
        )
    };
    match (def.field_type, value) {
        (_, Value::Null) => Ok(None),
        (FieldType::Text, Value::String(s)) => {
            if s.trim().is_empty() {
                Ok(None)
            } else if s.chars().count() > MAX_TEXT_CHARS {
                Err(("too_long", format!("at most {MAX_TEXT_CHARS} characters")))
            } else if s.contains('\0') {
                Err(("invalid_format", crate::contact::NUL_REFUSED.to_owned()))
            } else {
                Ok(Some(Value::String(s.clone())))
            }
        }
        (FieldType::Number, Value::Number(n)) => Ok(Some(Value::Number(canonical_number(n)))),
        (FieldType::Boolean, Value::Bool(b)) => Ok(Some(Value::Bool(*b))),
        (FieldType::Date, Value::String(s)) => calendar_date(s)
            .map(|d| Some(Value::String(d.format("%Y-%m-%d").to_string())))
            .ok_or_else(|| ("invalid_format", "expected a date as YYYY-MM-DD".to_owned())),
        (FieldType::Select, Value::String(s)) => {
            if def.options.iter().any(|o| o == s) {
                Ok(Some(Value::String(s.clone())))
            } else {
                Err((
                    "invalid_option",
                    format!("expected one of: {}", def.options.join(", ")),
                ))
            }
        }
        (FieldType::Multiselect, Value::Array(items)) => {
            let mut chosen: Vec<Value> = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(s) = item else {
                    return Err(wrong());
                };
                if !def.options.iter().any(|o| o == s) {
                    return Err((
                        "invalid_option",
                        format!("expected values among: {}", def.options.join(", ")),
                    ));
                }
                if !chosen.contains(item) {
                    chosen.push(item.clone());
                }
            }
            Ok((!chosen.is_empty()).then_some(Value::Array(chosen)))
        }
        _ => Err(wrong()),
    }
}

/// The filter value of `customFields.<key>=<raw>` in a list query, typed by its field.
///
/// # Errors
/// `unknown_field` or a value that does not fit the field's type.
pub fn filter_value(definitions: &[FieldSpec], key: &str, raw: &str) -> Result<Value, FieldIssue> {
    let field = format!("customFields.{key}");
    let def = definitions
        .iter()
        .find(|d| d.key.as_str() == key)
        .ok_or_else(|| {
            FieldIssue::new(field.clone(), UNKNOWN_FIELD, "no custom field has this key")
        })?;
    let candidate = match def.field_type {
        FieldType::Number => raw
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or(Value::Null),
        FieldType::Boolean => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::Null,
        },
        // A multiselect matches when the value is among those chosen.
        FieldType::Multiselect => Value::Array(vec![Value::String(raw.to_owned())]),
        FieldType::Text | FieldType::Date | FieldType::Select => Value::String(raw.to_owned()),
    };
    if candidate.is_null() {
        return Err(FieldIssue::new(
            field,
            "invalid_type",
            format!("expected a {} value", def.field_type.as_str()),
        ));
    }
    // Any option may be looked for, removed ones too: contacts keep a value after its
    // option is dropped, and finding them is how they get a current one.
    if def.field_type.has_options() {
        let as_text = FieldSpec {
            field_type: FieldType::Text,
            options: Vec::new(),
            ..def.clone()
        };
        normalize_value(&as_text, &Value::String(raw.to_owned()))
            .map_err(|(code, message)| FieldIssue::new(field.clone(), code, message))?
            .ok_or_else(|| FieldIssue::new(field, "required", "a filter value is required"))?;
        return Ok(candidate);
    }
    normalize_value(def, &candidate)
        .map_err(|(code, message)| FieldIssue::new(field.clone(), code, message))?
        .ok_or_else(|| FieldIssue::new(field, "required", "a filter value is required"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(key: &str, t: FieldType, required: bool, options: &[&str]) -> FieldSpec {
        let options: Vec<String> = options.iter().map(|s| (*s).to_owned()).collect();
        FieldSpec::new(key, "Label", t, required, &options).unwrap()
    }

    fn defs() -> Vec<FieldSpec> {
        vec![
            spec("industry", FieldType::Select, false, &["saas", "retail"]),
            spec("seats", FieldType::Number, false, &[]),
            spec("renewal", FieldType::Date, false, &[]),
            spec("churned", FieldType::Boolean, false, &[]),
            spec("notes", FieldType::Text, false, &[]),
            spec(
                "channels",
                FieldType::Multiselect,
                false,
                &["email", "phone", "sms"],
            ),
            spec("region", FieldType::Text, true, &[]),
        ]
    }

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keys_follow_the_documented_format() {
        for good in [
            "a",
            "industry",
            "seats_2024",
            &format!("a{}", "b".repeat(49)),
        ] {
            assert!(FieldKey::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "_a",
            "Industry",
            "in-dustry",
            "ind ustry",
            "é",
            &format!("a{}", "b".repeat(50)),
        ] {
            assert_eq!(FieldKey::parse(bad), Err("invalid_format"), "{bad}");
        }
    }

    #[test]
    fn definitions_validate_options_by_type() {
        let errs = FieldSpec::new("x", " ", FieldType::Select, false, &[]).unwrap_err();
        let codes: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(codes, [("label", "required"), ("options", "required")]);
        let errs = FieldSpec::new("x", "X", FieldType::Text, false, &["a".into()]).unwrap_err();
        assert_eq!(errs[0].code, "not_allowed");
        let errs = FieldSpec::new(
            "x",
            "X",
            FieldType::Select,
            false,
            &["a".into(), " a ".into(), String::new()],
        )
        .unwrap_err();
        assert_eq!(
            errs.iter().map(|e| e.code).collect::<Vec<_>>(),
            ["duplicate", "required"]
        );
        let ok = FieldSpec::new(
            "x",
            " X ",
            FieldType::Multiselect,
            true,
            &[" a ".into(), "b".into()],
        )
        .unwrap();
        assert_eq!(
            (ok.label.as_str(), ok.options.clone()),
            ("X", vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            FieldSpec::new("Bad", "X", FieldType::Text, false, &[]).unwrap_err()[0].field,
            "key"
        );
    }

    #[test]
    fn values_of_every_type_are_checked_and_normalized() {
        let ok = validate_values(
            &obj(json!({
                "industry": "saas", "seats": 12.5, "renewal": "2027-02-28", "churned": false,
                "notes": "long story", "channels": ["sms", "email", "sms"], "region": "emea"
            })),
            &defs(),
            None,
        )
        .unwrap();
        assert_eq!(ok["channels"], json!(["sms", "email"]));
        assert_eq!(ok.len(), 7);

        let bad = validate_values(
            &obj(json!({
                "industry": "mining", "seats": "12", "renewal": "2027-02-30", "churned": "no",
                "notes": "x".repeat(1001), "channels": ["fax"], "region": "emea", "colour": "red"
            })),
            &defs(),
            None,
        )
        .unwrap_err();
        let got: BTreeMap<_, _> = bad.iter().map(|i| (i.field.as_str(), i.code)).collect();
        assert_eq!(got["customFields.industry"], "invalid_option");
        assert_eq!(got["customFields.seats"], "invalid_type");
        assert_eq!(got["customFields.renewal"], "invalid_format");
        assert_eq!(got["customFields.churned"], "invalid_type");
        assert_eq!(got["customFields.notes"], "too_long");
        assert_eq!(got["customFields.channels"], "invalid_option");
        assert_eq!(got["customFields.colour"], UNKNOWN_FIELD);
        assert_eq!(got.len(), 7);

        let nul = validate_values(&obj(json!({"notes": "a\u{0}b"})), &defs(), None).unwrap_err();
        assert_eq!(
            (nul[0].field.as_str(), nul[0].code),
            ("customFields.notes", "invalid_format")
        );
    }

    #[test]
    fn a_date_is_written_exactly_as_yyyy_mm_dd() {
        for good in ["2027-02-28", "0001-01-01", "2024-02-29"] {
            let ok = validate_values(
                &obj(json!({ "renewal": good, "region": "emea" })),
                &defs(),
                None,
            )
            .unwrap();
            assert_eq!(ok["renewal"], json!(good));
        }
        for bad in [
            " 27-2-3",
            "27-2-3",
            "2027-2-03",
            "2027-02-3",
            "+12345-01-01",
            " 2027-02-28",
            "2027-02-28 ",
            "2027/02/28",
            "2027-02-30",
            "２０２７-02-28",
        ] {
            let issues = validate_values(
                &obj(json!({ "renewal": bad, "region": "emea" })),
                &defs(),
                None,
            )
            .unwrap_err();
            assert_eq!(issues[0].code, "invalid_format", "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_stored_value_without_definition_does_not_block_an_unrelated_update() {
        let stored = obj(json!({"region": "emea", "retired": "x"}));
        let previous: CustomFieldValues = stored.clone().into_iter().collect();
        // Kept as it was while unchanged; a new value for it is still refused.
        let kept = validate_values(&stored, &defs(), Some(&previous)).unwrap();
        assert_eq!(kept["retired"], json!("x"));
        let mut changed = stored.clone();
        changed.insert("retired".into(), json!("y"));
        let refused = validate_values(&changed, &defs(), Some(&previous)).unwrap_err();
        assert_eq!(refused[0].code, UNKNOWN_FIELD);
    }

    #[test]
    fn a_whole_number_is_one_value_however_written() {
        let seats = |v: Value| {
            validate_values(&obj(json!({"seats": v, "region": "emea"})), &defs(), None).unwrap()
                ["seats"]
                .clone()
        };
        for written in [json!(5), json!(5.0), json!(5e0), json!(500e-2)] {
            assert_eq!(seats(written.clone()).to_string(), "5", "{written}");
        }
        assert_eq!(seats(json!(-0.0)).to_string(), "0");
        assert_eq!(seats(json!(12.5)).to_string(), "12.5");
        // Beyond 2^53 a float no longer holds every whole number: kept as sent.
        assert_eq!(seats(json!(1e300)), json!(1e300));
    }

    #[test]
    fn required_fields_on_create_and_on_update() {
        let missing = validate_values(&obj(json!({"seats": 3})), &defs(), None).unwrap_err();
        assert_eq!(
            (missing[0].field.as_str(), missing[0].code),
            ("customFields.region", "required")
        );
        // Blank text is no value.
        assert!(validate_values(&obj(json!({"region": "  "})), &defs(), None).is_err());

        // A contact created before the field became required keeps working...
        let before: CustomFieldValues = [("seats".to_owned(), json!(3))].into();
        assert!(validate_values(&obj(json!({"seats": 4})), &defs(), Some(&before)).is_ok());
        // ...but one that has a value cannot drop it.
        let with: CustomFieldValues = [("region".to_owned(), json!("emea"))].into();
        let err = validate_values(&obj(json!({})), &defs(), Some(&with)).unwrap_err();
        assert_eq!(err[0].code, "required");
    }

    #[test]
    fn unchanged_values_survive_narrowed_options() {
        let narrowed = vec![spec("industry", FieldType::Select, false, &["retail"])];
        let previous: CustomFieldValues = [("industry".to_owned(), json!("saas"))].into();
        assert!(
            validate_values(
                &obj(json!({"industry": "saas"})),
                &narrowed,
                Some(&previous)
            )
            .is_ok()
        );
        assert!(validate_values(&obj(json!({"industry": "saas"})), &narrowed, None).is_err());
    }

    #[test]
    fn type_changes_are_refused_while_values_exist() {
        let now = Utc::now();
        let def = CustomFieldDefinition {
            id: CustomFieldId::from_uuid(uuid::Uuid::now_v7()),
            organization_id: OrgId::from_uuid(uuid::Uuid::now_v7()),
            spec: spec("seats", FieldType::Number, false, &[]),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let as_text = spec("seats", FieldType::Text, false, &[]);
        assert_eq!(
            def.change(as_text.clone(), true, now),
            Err(DefinitionChangeError::TypeChangeWithValues)
        );
        assert_eq!(def.change(as_text, false, now).unwrap().unwrap().version, 2);
        assert_eq!(def.change(def.spec.clone(), true, now), Ok(None));
        let renamed = spec("places", FieldType::Number, false, &[]);
        assert_eq!(
            def.change(renamed, false, now),
            Err(DefinitionChangeError::KeyChanged)
        );
    }

    #[test]
    fn filter_values_are_typed_by_their_field() {
        let d = defs();
        assert_eq!(filter_value(&d, "seats", "12").unwrap(), json!(12));
        assert_eq!(filter_value(&d, "churned", "true").unwrap(), json!(true));
        assert_eq!(filter_value(&d, "channels", "sms").unwrap(), json!(["sms"]));
        assert_eq!(
            filter_value(&d, "seats", "many").unwrap_err().code,
            "invalid_type"
        );
        // A removed option still finds the contacts that hold it.
        assert_eq!(
            filter_value(&d, "industry", "mining").unwrap(),
            json!("mining")
        );
        assert_eq!(filter_value(&d, "channels", "fax").unwrap(), json!(["fax"]));
        assert_eq!(
            filter_value(&d, "industry", "a\0").unwrap_err().code,
            "invalid_format"
        );
        assert_eq!(
            filter_value(&d, "nope", "x").unwrap_err().code,
            UNKNOWN_FIELD
        );
    }
}
