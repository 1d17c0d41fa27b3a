//! What resource templates need: conditions ([`selector`]), kubectl-style JSONPath output
//! templates ([`jsonpath`]), `jqFilter` ([`jq`]), and the API calls that replace kubectl ([`api`]).

pub mod api;
pub mod jq;
pub mod jsonpath;
pub mod request;
pub mod selector;
