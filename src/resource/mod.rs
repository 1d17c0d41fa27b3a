//! What resource templates need: conditions ([`selector`]), kubectl-style JSONPath output
//! templates ([`jsonpath`]), and the API calls that replace kubectl ([`api`]).

pub mod api;
pub mod jsonpath;
pub mod selector;
