//! HTTP failures, classified into the crate's typed [`Error`] from the status code and the
//! kind of transport failure, never from a message text. Messages are Argo's.

use reqwest::StatusCode;

use crate::storage::{Error, ErrorKind, cause_chain, classify_reqwest};

/// A URL fit for messages: any password in it is masked.
pub fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// A non-2xx answer to a GET: 404 is NotFound with the status text (`404 Not Found`), as
/// Argo's `errors.New(CodeNotFound, res.Status)`; anything else is Argo's load failure.
pub fn load_status(driver: &'static str, key: &str, url: &url::Url, status: StatusCode) -> Error {
    if status == StatusCode::NOT_FOUND {
        return Error::not_found(key, status.to_string());
    }
    Error::backend(
        driver,
        ErrorKind::from_http_status(status.as_u16()),
        format!(
            "loading content from {} failed with reason: {status}",
            shown(url)
        ),
    )
}

/// A non-2xx answer to a PUT, as Argo words it.
pub fn save_status(driver: &'static str, key: &str, url: &url::Url, status: StatusCode) -> Error {
    let hint = if status.is_redirection() {
        " (a streamed upload cannot follow a redirect; set saveStreamViaFile: true)"
    } else {
        ""
    };
    Error::backend(
        driver,
        ErrorKind::from_http_status(status.as_u16()),
        format!(
            "saving file {key} to {} failed with reason: {status}{hint}",
            shown(url)
        ),
    )
}

/// A request that got no answer (connect, TLS, timeout, broken body).
pub fn transport(driver: &'static str, method: &str, url: &url::Url, e: &reqwest::Error) -> Error {
    Error::backend(
        driver,
        classify_reqwest(e),
        format!("{method} {}: {}", shown(url), cause_chain(e)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argo_texts_and_typed_kinds() {
        let url = url::Url::parse("http://user:pw@example.com/a/b.tgz").expect("url");
        let e = load_status("http", "a/b.tgz", &url, StatusCode::NOT_FOUND);
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "404 Not Found");

        let e = load_status("http", "a/b.tgz", &url, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.kind(), Some(ErrorKind::Server));
        assert_eq!(
            e.to_string(),
            "loading content from http://user:***@example.com/a/b.tgz failed with reason: 503 Service Unavailable"
        );

        let e = save_status("artifactory", "a/b.tgz", &url, StatusCode::FORBIDDEN);
        assert_eq!(e.kind(), Some(ErrorKind::Auth));
        assert!(
            e.to_string()
                .starts_with("saving file a/b.tgz to http://user:***@example.com/a/b.tgz failed with reason: 403 Forbidden"),
            "{e}"
        );
    }
}
