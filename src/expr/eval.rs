//! Tree-walking evaluation over JSON values, with expr-lang's semantics for the supported subset.

use serde_json::{Map, Value};

use super::parser::Node;

/// The builtin functions this implementation provides.
pub const BUILTINS: [&str; 33] = [
    "len",
    "filter",
    "map",
    "all",
    "any",
    "none",
    "one",
    "count",
    "find",
    "findIndex",
    "sum",
    "first",
    "last",
    "lower",
    "upper",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "split",
    "join",
    "replace",
    "indexOf",
    "hasPrefix",
    "hasSuffix",
    "string",
    "int",
    "float",
    "abs",
    "min",
    "max",
    "keys",
    "values",
    "reverse",
];

type Result<T> = std::result::Result<T, String>;

struct Scope<'a> {
    env: &'a Map<String, Value>,
    pointer: Option<&'a Value>,
}

pub fn evaluate(node: &Node, env: &Map<String, Value>) -> Result<Value> {
    eval(node, &Scope { env, pointer: None })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "map",
    }
}

enum Num {
    Int(i64),
    Float(f64),
}

fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(Num::Int)
            .or_else(|| n.as_f64().map(Num::Float)),
        _ => None,
    }
}

fn as_f64(n: &Num) -> f64 {
    match n {
        Num::Int(i) => *i as f64,
        Num::Float(f) => *f,
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Deep equality, numbers compared by value whatever their representation.
fn equal(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(Num::Int(x)), Some(Num::Int(y))) => x == y,
        (Some(x), Some(y)) => as_f64(&x) == as_f64(&y),
        _ => match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
            }
            _ => a == b,
        },
    }
}

fn string<'v>(v: &'v Value, what: &str) -> Result<&'v str> {
    v.as_str()
        .ok_or_else(|| format!("{what} needs a string, got {}", kind(v)))
}

fn array<'v>(v: &'v Value, what: &str) -> Result<&'v Vec<Value>> {
    v.as_array()
        .ok_or_else(|| format!("{what} needs an array, got {}", kind(v)))
}

fn boolean(v: &Value, what: &str) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| format!("{what} needs a bool, got {}", kind(v)))
}

fn eval(node: &Node, scope: &Scope<'_>) -> Result<Value> {
    match node {
        Node::Lit(v) => Ok(v.clone()),
        Node::Var(name) => scope
            .env
            .get(name)
            .cloned()
            .ok_or_else(|| format!("unknown name {name}")),
        Node::Pointer => scope
            .pointer
            .cloned()
            .ok_or_else(|| "# is only defined inside a closure".to_string()),
        Node::Member {
            object,
            key,
            optional,
        } => {
            let object = eval(object, scope)?;
            if object.is_null() && *optional {
                return Ok(Value::Null);
            }
            let key = eval(key, scope)?;
            member(&object, &key)
        }
        Node::Slice { object, from, to } => {
            let object = eval(object, scope)?;
            let bound = |b: &Option<Box<Node>>| -> Result<Option<i64>> {
                match b {
                    None => Ok(None),
                    Some(n) => match num(&eval(n, scope)?) {
                        Some(Num::Int(i)) => Ok(Some(i)),
                        _ => Err("slice bounds must be integers".to_string()),
                    },
                }
            };
            slice(&object, bound(from)?, bound(to)?)
        }
        Node::Unary(op, operand) => {
            let v = eval(operand, scope)?;
            match (*op, num(&v)) {
                ("!", _) => Ok(Value::Bool(!boolean(&v, "not")?)),
                ("-", Some(Num::Int(i))) => Ok(Value::from(-i)),
                ("-", Some(Num::Float(f))) => Ok(float(-f)),
                ("+", Some(_)) => Ok(v),
                _ => Err(format!("invalid operation {op} ({})", kind(&v))),
            }
        }
        Node::Binary(op, left, right) => binary(op, left, right, scope),
        Node::Ternary(cond, then, otherwise) => {
            if boolean(&eval(cond, scope)?, "?:")? {
                eval(then, scope)
            } else {
                eval(otherwise, scope)
            }
        }
        Node::Array(items) => items
            .iter()
            .map(|i| eval(i, scope))
            .collect::<Result<Vec<_>>>()
            .map(Value::Array),
        Node::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = eval(k, scope)?;
                out.insert(string(&key, "a map key")?.to_string(), eval(v, scope)?);
            }
            Ok(Value::Object(out))
        }
        Node::Closure(_) => Err("a closure can only be a builtin's argument".to_string()),
        Node::Call(name, args) => call(name, args, scope),
    }
}

fn member(object: &Value, key: &Value) -> Result<Value> {
    match (object, key) {
        (Value::Object(m), Value::String(k)) => Ok(m.get(k).cloned().unwrap_or(Value::Null)),
        (Value::Array(a), k) => match num(k) {
            Some(Num::Int(i)) => {
                let len = a.len() as i64;
                let at = if i < 0 { len + i } else { i };
                usize::try_from(at)
                    .ok()
                    .and_then(|at| a.get(at))
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i} (array of length {len})"))
            }
            _ => Err(format!("cannot index an array with {}", kind(k))),
        },
        (Value::String(s), k) => match num(k) {
            Some(Num::Int(i)) => {
                let chars: Vec<char> = s.chars().collect();
                let len = chars.len() as i64;
                let at = if i < 0 { len + i } else { i };
                usize::try_from(at)
                    .ok()
                    .and_then(|at| chars.get(at))
                    .map(|c| Value::String(c.to_string()))
                    .ok_or_else(|| format!("index out of range: {i} (string of length {len})"))
            }
            _ => Err(format!("cannot index a string with {}", kind(k))),
        },
        (Value::Null, k) => Err(format!("cannot fetch {k} from nil")),
        (o, k) => Err(format!("cannot fetch {k} from {}", kind(o))),
    }
}

fn slice(object: &Value, from: Option<i64>, to: Option<i64>) -> Result<Value> {
    let range = |len: usize| {
        let len = len as i64;
        let clamp = |i: i64| (if i < 0 { len + i } else { i }).clamp(0, len) as usize;
        let start = clamp(from.unwrap_or(0));
        let end = clamp(to.unwrap_or(len));
        start..end.max(start)
    };
    match object {
        Value::Array(a) => Ok(Value::Array(a[range(a.len())].to_vec())),
        Value::String(s) => {
            let chars: Vec<char> = s.chars().collect();
            Ok(Value::String(chars[range(chars.len())].iter().collect()))
        }
        other => Err(format!("cannot slice {}", kind(other))),
    }
}

fn binary(op: &str, left: &Node, right: &Node, scope: &Scope<'_>) -> Result<Value> {
    let l = eval(left, scope)?;
    // Short-circuit forms first.
    match op {
        "and" | "&&" => {
            return Ok(Value::Bool(
                boolean(&l, op)? && boolean(&eval(right, scope)?, op)?,
            ));
        }
        "or" | "||" => {
            return Ok(Value::Bool(
                boolean(&l, op)? || boolean(&eval(right, scope)?, op)?,
            ));
        }
        "??" => {
            return if l.is_null() {
                eval(right, scope)
            } else {
                Ok(l)
            };
        }
        _ => {}
    }
    let r = eval(right, scope)?;
    let mismatch = || format!("invalid operation: {} {op} {}", kind(&l), kind(&r));
    match op {
        "==" => Ok(Value::Bool(equal(&l, &r))),
        "!=" => Ok(Value::Bool(!equal(&l, &r))),
        "<" | ">" | "<=" | ">=" => {
            let ordering = match (num(&l), num(&r), &l, &r) {
                (Some(Num::Int(a)), Some(Num::Int(b)), _, _) => a.cmp(&b),
                (Some(a), Some(b), _, _) => {
                    as_f64(&a).partial_cmp(&as_f64(&b)).ok_or_else(mismatch)?
                }
                (_, _, Value::String(a), Value::String(b)) => a.cmp(b),
                _ => return Err(mismatch()),
            };
            Ok(Value::Bool(match op {
                "<" => ordering.is_lt(),
                ">" => ordering.is_gt(),
                "<=" => ordering.is_le(),
                _ => ordering.is_ge(),
            }))
        }
        "in" | "not in" => {
            let found = match &r {
                Value::Array(items) => items.iter().any(|i| equal(i, &l)),
                Value::Object(m) => m.contains_key(string(&l, "in (map)")?),
                Value::Null => false,
                _ => return Err(mismatch()),
            };
            Ok(Value::Bool(found == (op == "in")))
        }
        "contains" | "startsWith" | "endsWith" => {
            let (a, b) = (string(&l, op)?, string(&r, op)?);
            Ok(Value::Bool(match op {
                "contains" => a.contains(b),
                "startsWith" => a.starts_with(b),
                _ => a.ends_with(b),
            }))
        }
        "matches" => {
            let re = regex::Regex::new(string(&r, op)?)
                .map_err(|e| format!("invalid regular expression: {e}"))?;
            Ok(Value::Bool(re.is_match(string(&l, op)?)))
        }
        "+" => match (&l, &r) {
            (Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
            (Value::Array(a), Value::Array(b)) => {
                Ok(Value::Array(a.iter().chain(b).cloned().collect()))
            }
            _ => arithmetic(op, &l, &r).ok_or_else(mismatch),
        },
        _ => arithmetic(op, &l, &r).ok_or_else(mismatch),
    }
}

fn arithmetic(op: &str, l: &Value, r: &Value) -> Option<Value> {
    let (a, b) = (num(l)?, num(r)?);
    if let (Num::Int(x), Num::Int(y), "+" | "-" | "*" | "%") = (&a, &b, op) {
        return Some(Value::from(match op {
            "+" => x.checked_add(*y)?,
            "-" => x.checked_sub(*y)?,
            "*" => x.checked_mul(*y)?,
            _ => x.checked_rem(*y)?,
        }));
    }
    let (x, y) = (as_f64(&a), as_f64(&b));
    Some(float(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => x / y,
        "**" | "^" => x.powf(y),
        _ => return None,
    }))
}

fn call(name: &str, args: &[Node], scope: &Scope<'_>) -> Result<Value> {
    let arity = |n: usize| -> Result<()> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "{name}() takes {n} argument(s), {} given",
                args.len()
            ))
        }
    };
    let arg = |i: usize| eval(&args[i], scope);
    match name {
        "filter" | "map" | "all" | "any" | "none" | "one" | "count" | "find" | "findIndex"
        | "sum"
            if args.len() == 2 =>
        {
            predicate(name, &arg(0)?, &args[1], scope)
        }
        "sum" => {
            arity(1)?;
            let items = arg(0)?;
            let mut total = Value::from(0);
            for i in array(&items, name)? {
                total = arithmetic("+", &total, i).ok_or("sum() needs numbers")?;
            }
            Ok(total)
        }
        "len" => {
            arity(1)?;
            Ok(Value::from(match arg(0)? {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                other => return Err(format!("invalid argument for len (type {})", kind(&other))),
            }))
        }
        "first" | "last" => {
            arity(1)?;
            let items = arg(0)?;
            let items = array(&items, name)?;
            let item = if name == "first" {
                items.first()
            } else {
                items.last()
            };
            Ok(item.cloned().unwrap_or(Value::Null))
        }
        "lower" | "upper" | "trim" => {
            let s = arg(0)?;
            let s = string(&s, name)?;
            Ok(Value::String(match (name, args.len()) {
                ("lower", 1) => s.to_lowercase(),
                ("upper", 1) => s.to_uppercase(),
                ("trim", 1) => s.trim().to_string(),
                ("trim", 2) => {
                    let cut = arg(1)?;
                    let cut = string(&cut, name)?;
                    s.trim_matches(|c| cut.contains(c)).to_string()
                }
                _ => return Err(format!("{name}() takes 1 argument")),
            }))
        }
        "trimPrefix" | "trimSuffix" | "hasPrefix" | "hasSuffix" | "indexOf" | "split" | "join" => {
            arity(2)?;
            let (a, b) = (arg(0)?, arg(1)?);
            let b = string(&b, name)?;
            if name == "join" {
                let parts = array(&a, name)?
                    .iter()
                    .map(|p| string(p, name))
                    .collect::<Result<Vec<_>>>()?;
                return Ok(Value::String(parts.join(b)));
            }
            let a = string(&a, name)?;
            Ok(match name {
                "trimPrefix" => Value::String(a.strip_prefix(b).unwrap_or(a).to_string()),
                "trimSuffix" => Value::String(a.strip_suffix(b).unwrap_or(a).to_string()),
                "hasPrefix" => Value::Bool(a.starts_with(b)),
                "hasSuffix" => Value::Bool(a.ends_with(b)),
                "indexOf" => Value::from(
                    a.find(b)
                        .map_or(-1, |byte| a[..byte].chars().count() as i64),
                ),
                _ => Value::Array(a.split(b).map(|p| Value::String(p.to_string())).collect()),
            })
        }
        "replace" => {
            arity(3)?;
            let (s, old, new) = (arg(0)?, arg(1)?, arg(2)?);
            Ok(Value::String(
                string(&s, name)?.replace(string(&old, name)?, string(&new, name)?),
            ))
        }
        "string" => {
            arity(1)?;
            Ok(Value::String(match arg(0)? {
                Value::String(s) => s,
                Value::Null => "<nil>".to_string(),
                other => other.to_string(),
            }))
        }
        "int" | "float" => {
            arity(1)?;
            let v = arg(0)?;
            let f = match (&v, num(&v)) {
                (_, Some(Num::Int(i))) if name == "int" => return Ok(Value::from(i)),
                (_, Some(n)) => as_f64(&n),
                (Value::String(s), _) => s
                    .trim()
                    .parse::<f64>()
                    .map_err(|e| format!("{name}({s:?}): {e}"))?,
                _ => return Err(format!("invalid argument for {name} (type {})", kind(&v))),
            };
            Ok(if name == "int" {
                Value::from(f.trunc() as i64)
            } else {
                float(f)
            })
        }
        "abs" => {
            arity(1)?;
            match num(&arg(0)?) {
                Some(Num::Int(i)) => Ok(Value::from(i.abs())),
                Some(Num::Float(f)) => Ok(float(f.abs())),
                None => Err("abs() needs a number".to_string()),
            }
        }
        "min" | "max" => {
            let values = if args.len() == 1 {
                array(&arg(0)?, name)?.clone()
            } else {
                args.iter()
                    .map(|a| eval(a, scope))
                    .collect::<Result<Vec<_>>>()?
            };
            let mut best: Option<Value> = None;
            for v in values {
                let n = num(&v).ok_or_else(|| format!("{name}() needs numbers"))?;
                let better = best.as_ref().and_then(num).is_none_or(|b| {
                    if name == "min" {
                        as_f64(&n) < as_f64(&b)
                    } else {
                        as_f64(&n) > as_f64(&b)
                    }
                });
                if better {
                    best = Some(v);
                }
            }
            Ok(best.unwrap_or(Value::Null))
        }
        "keys" | "values" => {
            arity(1)?;
            match arg(0)? {
                Value::Object(m) if name == "keys" => {
                    Ok(Value::Array(m.keys().cloned().map(Value::String).collect()))
                }
                Value::Object(m) => Ok(Value::Array(m.values().cloned().collect())),
                other => Err(format!("{name}() needs a map, got {}", kind(&other))),
            }
        }
        "reverse" => {
            arity(1)?;
            let items = arg(0)?;
            Ok(Value::Array(
                array(&items, name)?.iter().rev().cloned().collect(),
            ))
        }
        _ => Err(format!(
            "{name}() is not supported with {} argument(s)",
            args.len()
        )),
    }
}

/// The builtins that apply a closure to each element of an array.
fn predicate(name: &str, items: &Value, closure: &Node, scope: &Scope<'_>) -> Result<Value> {
    let Node::Closure(body) = closure else {
        return Err(format!("{name}() needs a closure as its second argument"));
    };
    let items = array(items, name)?;
    let apply = |item: &Value| {
        eval(
            body,
            &Scope {
                env: scope.env,
                pointer: Some(item),
            },
        )
    };
    let test = |item: &Value| apply(item).and_then(|v| boolean(&v, name));
    Ok(match name {
        "map" => Value::Array(items.iter().map(apply).collect::<Result<_>>()?),
        "sum" => {
            let mut total = Value::from(0);
            for item in items {
                total = arithmetic("+", &total, &apply(item)?).ok_or("sum() needs numbers")?;
            }
            total
        }
        _ => {
            let mut kept = Vec::new();
            let mut first = None;
            for (i, item) in items.iter().enumerate() {
                if test(item)? {
                    first.get_or_insert(i);
                    kept.push(item.clone());
                }
            }
            match name {
                "filter" => Value::Array(kept),
                "all" => Value::Bool(kept.len() == items.len()),
                "any" => Value::Bool(!kept.is_empty()),
                "none" => Value::Bool(kept.is_empty()),
                "one" => Value::Bool(kept.len() == 1),
                "count" => Value::from(kept.len()),
                "find" => kept.into_iter().next().unwrap_or(Value::Null),
                _ => Value::from(first.map_or(-1, |i| i as i64)),
            }
        }
    })
}
