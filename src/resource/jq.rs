//! `jqFilter` output parameters, as Argo evaluates them with gojq: each result of the filter
//! on the object, strings as they are and other values as compact JSON (object keys sorted,
//! as Go marshals maps), one per line, the whole trimmed of surrounding whitespace.
//! The filter runs on jaq (jq's language in pure Rust).

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;

/// Runs `filter` on the JSON text `input`.
pub fn filter(input: &str, filter: &str) -> Result<String, String> {
    let input = jaq_json::read::parse_single(input.as_bytes())
        .map_err(|e| format!("the object is not JSON: {e}"))?;
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(
            &arena,
            File {
                code: filter,
                path: (),
            },
        )
        .map_err(|errors| format!("cannot parse jq filter {filter:?}: {errors:?}"))?;
    let compiled = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| format!("cannot compile jq filter {filter:?}: {errors:?}"))?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&compiled.lut, Vars::new([]));
    let mut out = String::new();
    for value in compiled.id.run((ctx, input)).map(unwrap_valr) {
        let value = value.map_err(|e| format!("jq filter {filter:?}: {e}"))?;
        // Through serde_json: its maps sort keys, as Go's encoder does.
        let json: serde_json::Value = serde_json::from_str(&value.to_string())
            .map_err(|e| format!("jq filter {filter:?} gave a value JSON cannot hold: {e}"))?;
        match json {
            serde_json::Value::String(s) => out.push_str(&s),
            other => out.push_str(&other.to_string()),
        }
        out.push('\n');
    }
    Ok(out.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECT: &str = r#"{"metadata":{"name":"pi","labels":{"b":"2","a":"1"}},"status":{"succeeded":1},"items":[1,2]}"#;

    #[test]
    fn results_print_as_argo_prints_them() {
        assert_eq!(filter(OBJECT, ".metadata.name").expect("name"), "pi");
        assert_eq!(filter(OBJECT, ".status.succeeded").expect("number"), "1");
        assert_eq!(
            filter(OBJECT, ".metadata.labels").expect("object"),
            r#"{"a":"1","b":"2"}"#
        );
        assert_eq!(filter(OBJECT, ".items[]").expect("stream"), "1\n2");
        assert_eq!(
            filter(OBJECT, ".items | map(. * 10) | add").expect("std"),
            "30"
        );
        assert_eq!(filter(OBJECT, ".missing").expect("null"), "null");
    }

    #[test]
    fn bad_filters_are_errors() {
        assert!(filter(OBJECT, ".metadata.name | ").is_err());
        assert!(filter(OBJECT, "error(\"no\")").is_err());
        assert!(filter(OBJECT, "nosuchfunction").is_err());
    }
}
