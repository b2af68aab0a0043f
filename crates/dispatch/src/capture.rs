//! Capped output capture: keep the tail of a stream and hand it out line by line.
//!
//! Agents can print without bound (a test suite gone wild, a `cat` of a huge file). Memory per
//! stream is bounded by the tail cap plus one line cap, whatever the agent does, and a line with
//! no newline in sight never makes the reader buffer the whole stream.

use std::borrow::Cow;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The last `cap` bytes written to it.
#[derive(Debug, Clone)]
pub struct TailBuffer {
    buf: Vec<u8>,
    cap: usize,
    total: u64,
}

impl TailBuffer {
    /// An empty buffer that keeps at most `cap` bytes. Allocates nothing until written to.
    pub fn new(cap: usize) -> Self {
        TailBuffer { buf: Vec::new(), cap, total: 0 }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if bytes.len() >= self.cap {
            self.buf.clear();
            self.buf.extend_from_slice(&bytes[bytes.len() - self.cap..]);
            return;
        }
        self.buf.extend_from_slice(bytes);
        // Trimming only once the buffer holds twice the cap keeps the copying amortised O(1)
        // per byte instead of shifting the buffer on every write.
        if self.buf.len() > self.cap.saturating_mul(2) {
            let excess = self.buf.len() - self.cap;
            self.buf.drain(..excess);
        }
    }

    /// Bytes written in total, including those no longer kept.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether bytes were dropped from the front.
    pub fn truncated(&self) -> bool {
        self.total > self.cap as u64
    }

    /// The kept tail as text. Invalid UTF-8 becomes U+FFFD, except a character cut in half at the
    /// front by the cap, which is dropped.
    pub fn to_string_lossy(&self) -> String {
        let start = self.buf.len().saturating_sub(self.cap);
        let mut tail = &self.buf[start..];
        if self.truncated() {
            let skip = tail.iter().take(3).take_while(|b| (**b & 0b1100_0000) == 0b1000_0000).count();
            tail = &tail[skip..];
        }
        String::from_utf8_lossy(tail).into_owned()
    }
}

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Reads `reader` to its end, keeping its tail in `tail` and calling `on_line` for every line
/// (without the line terminator, `\r\n` or `\n`). Lines longer than `max_line` bytes are cut to
/// that length; the rest of such a line still counts towards `tail`.
///
/// Read errors end the stream quietly: the output of a process that is being killed is
/// best-effort, and the caller learns what happened from the exit status.
pub async fn read_lines<R>(mut reader: R, tail: &mut TailBuffer, max_line: usize, mut on_line: impl FnMut(&str))
where
    R: AsyncRead + Unpin,
{
    let mut chunk = vec![0u8; 8 * 1024];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &chunk[..n];
        tail.push(data);
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            append_capped(&mut line, &rest[..pos], max_line);
            emit(&line, &mut on_line);
            line.clear();
            rest = &rest[pos + 1..];
        }
        append_capped(&mut line, rest, max_line);
    }
    if !line.is_empty() {
        emit(&line, &mut on_line);
    }
}

fn append_capped(line: &mut Vec<u8>, bytes: &[u8], max_line: usize) {
    let room = max_line.saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn emit(line: &[u8], on_line: &mut impl FnMut(&str)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text: Cow<'_, str> = String::from_utf8_lossy(line);
    on_line(&text);
}

/// At most `max` bytes of `line`, cut on a char boundary, with `…` appended when cut.
pub fn clip_line(line: &str, max: usize) -> Cow<'_, str> {
    if line.len() <= max {
        return Cow::Borrowed(line);
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &line[..end]))
}

/// The last complete lines of `text` that fit in `max` bytes, trimmed. When even the last line
/// is longer than `max`, its tail is returned.
pub fn last_lines(text: &str, max: usize) -> &str {
    let text = text.trim();
    if text.len() <= max {
        return text;
    }
    let tail = bg_run_core::text::tail(text, max);
    let at_line_start = text.as_bytes()[text.len() - tail.len() - 1] == b'\n';
    if at_line_start {
        return tail.trim();
    }
    match tail.find('\n') {
        Some(pos) if !tail[pos + 1..].trim().is_empty() => tail[pos + 1..].trim(),
        _ => tail.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_buffer_keeps_the_last_bytes() {
        let mut t = TailBuffer::new(10);
        for i in 0..100u8 {
            t.push(&[b'a' + (i % 26)]);
        }
        assert_eq!(t.total(), 100);
        assert!(t.truncated());
        let s = t.to_string_lossy();
        assert_eq!(s.len(), 10);
        let expected: String = (90..100u8).map(|i| (b'a' + (i % 26)) as char).collect();
        assert_eq!(s, expected);
    }

    #[test]
    fn tail_buffer_drops_a_half_character_at_the_front() {
        let mut t = TailBuffer::new(5);
        t.push("ééé".as_bytes());
        assert_eq!(t.to_string_lossy(), "éé");
    }

    #[test]
    fn tail_buffer_big_write_replaces_content() {
        let mut t = TailBuffer::new(4);
        t.push(b"ab");
        t.push(b"0123456789");
        assert_eq!(t.to_string_lossy(), "6789");
        assert_eq!(t.total(), 12);
    }

    #[tokio::test]
    async fn lines_are_split_capped_and_the_last_partial_line_is_kept() {
        let input: &[u8] = b"one\r\ntwo\nthree-is-long\nfour";
        let mut tail = TailBuffer::new(1024);
        let mut lines = Vec::new();
        read_lines(input, &mut tail, 5, |l| lines.push(l.to_owned())).await;
        assert_eq!(lines, ["one", "two", "three", "four"]);
        assert_eq!(tail.to_string_lossy(), String::from_utf8_lossy(input));
    }

    #[test]
    fn clip_line_respects_char_boundaries() {
        assert_eq!(clip_line("héllo", 2), "h…");
        assert_eq!(clip_line("hello", 5), "hello");
    }

    #[test]
    fn last_lines_starts_on_a_line_boundary() {
        let text = "aaaa\nbbbb\ncccc\n";
        assert_eq!(last_lines(text, 9), "bbbb\ncccc");
        assert_eq!(last_lines(text, 6), "cccc");
        assert_eq!(last_lines("x\nyyyyyyyy", 4), "yyyy");
    }
}
