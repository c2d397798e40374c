//! What can go wrong, sorted by what the user must do, each with its documented exit code
//! (docs/cli.md): fix the command line (2), the key (3), the id (4), the input or the request
//! (5), or wait for the network or the service (6).

use std::process::ExitCode;

/// One problem of a refused CSV, as the API lists it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Problem {
    pub line: Option<u64>,
    pub column: Option<u32>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A command line or configuration the CLI cannot use.
    #[error("{0}")]
    Usage(String),
    /// 401 or 403: no key, a wrong or revoked key.
    #[error("{0}")]
    Auth(String),
    /// 404: no such request for this key (or no such route).
    #[error("{0}")]
    NotFound(String),
    /// The API refused the input (any other 4xx), with the problems it listed.
    #[error("{message}")]
    Refused { message: String, problems: Vec<Problem> },
    /// The request ended without its results: failed or cancelled.
    #[error("{0}")]
    RequestFailed(String),
    /// A webhook delivery that does not verify.
    #[error("{0}")]
    Invalid(String),
    /// The service could not be reached or answered 5xx: trying again later may work.
    #[error("{0}")]
    Unavailable(String),
    /// A local file could not be read or written.
    #[error("{0}")]
    File(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage(_) | Self::File(_) => 2,
            Self::Auth(_) => 3,
            Self::NotFound(_) => 4,
            Self::Refused { .. } | Self::RequestFailed(_) | Self::Invalid(_) => 5,
            Self::Unavailable(_) => 6,
        })
    }

    /// The lines printed on stderr: the error on one line, then each problem the API listed.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("imgpipe: {self}")];
        if let Self::Refused { problems, .. } = self {
            lines.extend(problems.iter().map(|problem| format!("  {}", describe(problem))));
        }
        lines
    }

    /// The error an HTTP answer other than 2xx means: `what` names the call, `code` and
    /// `message` come from the API's error body when it had one.
    pub fn from_answer(what: &str, status: u16, code: &str, message: &str, problems: Vec<Problem>) -> Self {
        let text = match (code.is_empty(), message.is_empty()) {
            (false, _) => format!("{what}: {code}: {message}"),
            (true, false) => format!("{what}: HTTP {status}: {message}"),
            (true, true) => format!("{what}: HTTP {status}"),
        };
        match status {
            401 | 403 => Self::Auth(format!("{text} (check --api-key, IMGPIPE_API_KEY or the profile's api_key)")),
            404 => Self::NotFound(text),
            400..=499 => Self::Refused { message: text, problems },
            _ => Self::Unavailable(text),
        }
    }
}

fn describe(problem: &Problem) -> String {
    match (problem.line, problem.column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: {}", problem.message),
        (Some(line), None) => format!("line {line}: {}", problem.message),
        _ => problem.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(error: &CliError) -> ExitCode {
        error.exit_code()
    }

    #[test]
    fn http_answers_map_to_the_documented_exit_codes() {
        let from = |status| CliError::from_answer("GET /api/status/x/", status, "some_code", "a message", vec![]);
        assert_eq!(code(&from(401)), ExitCode::from(3));
        assert_eq!(code(&from(403)), ExitCode::from(3));
        assert_eq!(code(&from(404)), ExitCode::from(4));
        assert_eq!(code(&from(409)), ExitCode::from(5));
        assert_eq!(code(&from(413)), ExitCode::from(5));
        assert_eq!(code(&from(422)), ExitCode::from(5));
        assert_eq!(code(&from(500)), ExitCode::from(6));
        assert_eq!(code(&from(503)), ExitCode::from(6));
        assert_eq!(code(&CliError::Usage("no API URL".into())), ExitCode::from(2));
        assert_eq!(code(&CliError::RequestFailed("cancelled".into())), ExitCode::from(5));
        assert_eq!(code(&CliError::Invalid("bad signature".into())), ExitCode::from(5));
    }

    #[test]
    fn an_error_is_one_line_then_the_problems_by_line_and_column() {
        let problems = vec![
            Problem { line: Some(3), column: Some(2), message: "not a URL".into() },
            Problem { line: None, column: None, message: "webhook_url: not http(s)".into() },
        ];
        let error = CliError::from_answer("POST /api/upload/", 422, "invalid_csv", "the CSV breaks 2 rules", problems);
        assert_eq!(
            error.lines(),
            [
                "imgpipe: POST /api/upload/: invalid_csv: the CSV breaks 2 rules",
                "  line 3, column 2: not a URL",
                "  webhook_url: not http(s)"
            ]
        );
        let bare = CliError::from_answer("GET /api/requests", 502, "", "", vec![]);
        assert_eq!(bare.lines(), ["imgpipe: GET /api/requests: HTTP 502"]);
        let gateway = CliError::from_answer("GET /api/requests", 403, "", "Forbidden", vec![]);
        assert_eq!(
            gateway.lines(),
            [
                "imgpipe: GET /api/requests: HTTP 403: Forbidden (check --api-key, IMGPIPE_API_KEY or the profile's api_key)"
            ]
        );
    }
}
