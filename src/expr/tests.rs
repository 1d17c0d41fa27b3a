use serde_json::{Value, json};

use super::*;

fn env(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn files() -> serde_json::Map<String, Value> {
    env(json!({"data": ["foo.py", "bar.pdf", "goo/foo.py", "moo/bar.pdf"]}))
}

#[test]
fn argos_data_transformations() {
    // The cases of Argo's workflow/data tests.
    let cases = [
        (
            "filter(data, {# endsWith '.py'})",
            json!(["foo.py", "goo/foo.py"]),
        ),
        (
            "filter(data, {# contains '/'})",
            json!(["goo/foo.py", "moo/bar.pdf"]),
        ),
        (
            "filter(data, {not(# contains '/')})",
            json!(["foo.py", "bar.pdf"]),
        ),
        (
            "map(data, {# + '.processed'})",
            json!([
                "foo.py.processed",
                "bar.pdf.processed",
                "goo/foo.py.processed",
                "moo/bar.pdf.processed"
            ]),
        ),
        (
            "filter(data, {# endsWith \".pdf\"})",
            json!(["bar.pdf", "moo/bar.pdf"]),
        ),
        ("filter(data, # startsWith 'goo')", json!(["goo/foo.py"])),
        ("len(filter(data, {# matches '^[a-z]+\\\\.py$'}))", json!(1)),
        (
            "map(filter(data, {!(# contains '/')}), {upper(#)})",
            json!(["FOO.PY", "BAR.PDF"]),
        ),
        ("data[1:3]", json!(["bar.pdf", "goo/foo.py"])),
        ("data[-1]", json!("moo/bar.pdf")),
        (
            "count(data, {# endsWith '.pdf'}) == 2 ? 'two' : 'other'",
            json!("two"),
        ),
    ];
    for (expression, want) in cases {
        assert_eq!(
            evaluate(expression, &files()).expect(expression),
            want,
            "{expression}"
        );
    }
}

#[test]
fn http_success_conditions() {
    let scope = env(json!({
        "request": {"method": "GET", "url": "http://x/y", "body": "", "headers": {}},
        "response": {"statusCode": 201, "body": "{\"ok\":true}", "headers": {"Content-Type": ["application/json"]}},
    }));
    for (expression, want) in [
        ("response.statusCode == 201", true),
        (
            "response.statusCode >= 200 && response.statusCode < 300",
            true,
        ),
        ("response.statusCode in [200, 202]", false),
        (
            "response.body contains 'ok' and request.method == \"GET\"",
            true,
        ),
        (
            "response.headers['Content-Type'][0] startsWith 'application/'",
            true,
        ),
        ("response.missing ?? 'x' == 'x'", true),
        ("not (response.statusCode != 201)", true),
        ("2 ** 3 == 8 && 7 % 4 == 3 && 7 / 2 == 3.5", true),
    ] {
        let program = Program::compile(expression).expect(expression);
        assert_eq!(
            program.run_bool(&scope).expect(expression),
            want,
            "{expression}"
        );
    }
}

#[test]
fn errors_name_the_expression_and_the_cause() {
    let e = evaluate("map(data, {# + '.processed'}", &files()).expect_err("an error");
    assert!(matches!(e, Error::Parse { .. }), "{e}");
    let e = evaluate("sortBy(data, #)", &files()).expect_err("an error");
    assert!(
        e.to_string().contains("unsupported function sortBy()"),
        "{e}"
    );
    let e = evaluate("data + 1", &files()).expect_err("an error");
    assert!(
        e.to_string().contains("invalid operation: array + int"),
        "{e}"
    );
    let e = Program::compile("len(data)")
        .expect("compile")
        .run_bool(&files())
        .expect_err("an error");
    assert!(e.to_string().contains("to bool"), "{e}");
    let e = evaluate("nothing.here", &files()).expect_err("an error");
    assert!(e.to_string().contains("unknown name nothing"), "{e}");
}

#[test]
fn precedence_follows_expr_lang() {
    let e = env(json!({"a": 1, "b": 2}));
    assert_eq!(evaluate("1 + 2 * 3", &e).expect("eval"), json!(7));
    assert_eq!(evaluate("2 ** 3 ** 2", &e).expect("eval"), json!(512.0));
    assert_eq!(
        evaluate("a < b or a > b and false", &e).expect("eval"),
        json!(true)
    );
    assert_eq!(evaluate("-a + b", &e).expect("eval"), json!(1));
    assert_eq!(evaluate("'x' not in ['y']", &e).expect("eval"), json!(true));
}
