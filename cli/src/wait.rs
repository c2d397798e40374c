//! `imgpipe wait`: polls the status until the request is final, shown as a live bar on a
//! terminal and as plain lines otherwise (on change, at most one every `LINE_EVERY`), then the
//! summary.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::answers::Status;
use crate::client::Api;
use crate::errors::CliError;
use crate::requests::{Polled, poll};
use crate::summary::{counts, eta, progress_line};

const POLL_EVERY: Duration = Duration::from_millis(500);
const LINE_EVERY: Duration = Duration::from_secs(2);

/// How progress is shown: decided by whether stderr (where it goes) is a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    Bar,
    Lines,
}

impl Display {
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() { Self::Bar } else { Self::Lines }
    }
}

/// Follows the request to its final state; returns it and how long it took to see it.
pub async fn follow(api: &Api, id: &str, display: Display) -> Result<(Status, Duration), CliError> {
    let started = Instant::now();
    let mut view = View::new(display);
    let mut first: Option<(Instant, u64)> = None;
    loop {
        match poll(api, id).await? {
            Polled::NotReady => view.not_ready(),
            Polled::Status(status) => {
                let done = status.succeeded + status.failed;
                let (since, done_then) = *first.get_or_insert((Instant::now(), done));
                let seconds = since.elapsed().as_secs_f64();
                let rate = (seconds >= 1.0 && done > done_then).then(|| (done - done_then) as f64 / seconds);
                let is_final = status.is_final();
                view.show(&status, rate, is_final);
                if is_final {
                    return Ok((*status, started.elapsed()));
                }
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

enum View {
    Bar(ProgressBar),
    Lines { last: Option<String>, printed_at: Option<Instant>, said_not_ready: bool },
}

impl View {
    fn new(display: Display) -> Self {
        match display {
            Display::Bar => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    // The message is cut to the terminal's width rather than wrapped (a wrapped
                    // line breaks the redrawing).
                    ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:25}] {pos}/{len} {wide_msg}")
                        .expect("a valid template")
                        .progress_chars("=> "),
                );
                Self::Bar(bar)
            }
            Display::Lines => Self::Lines { last: None, printed_at: None, said_not_ready: false },
        }
    }

    fn not_ready(&mut self) {
        match self {
            Self::Bar(bar) => bar.set_message("waiting for the CSV to be accepted"),
            Self::Lines { said_not_ready, .. } => {
                if !*said_not_ready {
                    eprintln!("waiting for the CSV to be accepted");
                    *said_not_ready = true;
                }
            }
        }
    }

    fn show(&mut self, status: &Status, rate: Option<f64>, is_final: bool) {
        match self {
            Self::Bar(bar) => {
                if bar.length().is_none() {
                    bar.enable_steady_tick(Duration::from_millis(200));
                }
                bar.set_length(status.total);
                bar.set_position(status.succeeded + status.failed);
                let mut message = format!("{}: {}", status.status, counts(status));
                if let Some(rate) = rate.filter(|rate| *rate > 0.0) {
                    message.push_str(&format!(" | {rate:.1} images/s"));
                    if status.pending > 0 {
                        message.push_str(&format!(" | ETA {}", eta(status.pending, rate)));
                    }
                }
                bar.set_message(message);
                if is_final {
                    bar.finish();
                    // The bar's line has no line end of its own: what follows starts below it.
                    eprintln!();
                }
            }
            Self::Lines { last, printed_at, .. } => {
                let line = progress_line(status, rate);
                let counts = progress_line(status, None);
                let changed = last.as_deref() != Some(counts.as_str());
                let due = printed_at.is_none_or(|at| at.elapsed() >= LINE_EVERY);
                if is_final || (changed && due) {
                    eprintln!("{line}");
                    *last = Some(counts);
                    *printed_at = Some(Instant::now());
                }
            }
        }
    }
}
