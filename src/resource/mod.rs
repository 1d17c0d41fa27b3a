//! What resource templates need besides the API calls: conditions ([`selector`]) and
//! kubectl-style JSONPath output templates ([`jsonpath`]).

pub mod jsonpath;
pub mod selector;
