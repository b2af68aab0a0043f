//! Helpers for the parser tests: a finished process as the parsers see it, and a progress sink
//! that records what it is told.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bg_run_core::{Progress, ProgressSink};

use super::run::OutputParser;
use crate::capture::{Stream, TailBuffer};
use crate::process::{Exit, ProcessResult, Stop};

/// A process that exited with `code` after printing `stdout` and `stderr`.
pub(crate) fn exited(code: i32, stdout: &str, stderr: &str) -> ProcessResult {
    let buffer = |text: &str| {
        let mut buf = TailBuffer::new(64 * 1024);
        buf.push(text.as_bytes());
        buf
    };
    ProcessResult {
        exit: Exit::Code(code),
        stopped: None,
        escalated: false,
        stdout: buffer(stdout),
        stderr: buffer(stderr),
        output_complete: true,
        duration: Duration::from_millis(5),
    }
}

/// A process killed at a 5 s timeout after printing `stdout`.
pub(crate) fn timed_out(stdout: &str) -> ProcessResult {
    ProcessResult {
        exit: Exit::Signal(15),
        stopped: Some(Stop::Timeout(Duration::from_secs(5))),
        ..exited(0, stdout, "")
    }
}

/// A sink and what it received.
pub(crate) fn recorder() -> (ProgressSink, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let seen = seen.clone();
        ProgressSink::new(move |p| seen.lock().unwrap().push(p))
    };
    (sink, seen)
}

/// Feeds `stdout` and `stderr` to `parser` line by line, as the process reader would.
pub(crate) fn feed(parser: &mut impl OutputParser, stdout: &str, stderr: &str, progress: &ProgressSink) {
    for line in stdout.lines() {
        parser.line(Stream::Stdout, line, progress);
    }
    for line in stderr.lines() {
        parser.line(Stream::Stderr, line, progress);
    }
}

/// Runs `parser` over the output of a process that exited with `code`.
pub(crate) fn judge<P: OutputParser>(mut parser: P, code: i32, stdout: &str, stderr: &str) -> bg_run_core::Outcome {
    let (sink, _) = recorder();
    feed(&mut parser, stdout, stderr, &sink);
    parser.finish(&exited(code, stdout, stderr))
}

/// `kind: message` lines of what a sink received.
pub(crate) fn kinds(seen: &Mutex<Vec<Progress>>) -> Vec<String> {
    seen.lock().unwrap().iter().map(|p| format!("{}: {}", p.kind, p.message)).collect()
}
