//! The only place this crate talks to the kernel directly: signalling a whole process group.
//!
//! `std` and tokio can signal one child, but not its group, and the group is what has to go when
//! an agent times out: agent CLIs start shells, language servers and test runners of their own.

#![allow(unsafe_code)]

use std::io;

/// Polite request to stop; agents get `kill_grace` to act on it.
pub const SIGTERM: i32 = libc::SIGTERM;
/// Cannot be caught or ignored.
pub const SIGKILL: i32 = libc::SIGKILL;

/// Sends `signal` to every process in the group `pgid`.
///
/// `Ok(false)` when the group no longer has any member, which is the normal case once an agent
/// has exited cleanly.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<bool> {
    // A pgid of 0 or 1 (or one that does not fit a pid_t) would turn `kill(-pgid)` into "our own
    // group" or "every process we may signal"; neither is ever a child's group.
    let pgid = match libc::pid_t::try_from(pgid) {
        Ok(p) if p > 1 => p,
        _ => {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("refusing to signal process group {pgid}")))
        }
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid addresses
    // the process group, and `pgid > 1` was checked above so this never means "all processes".
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// `SIGTERM` → "SIGTERM", for messages a human reads.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_groups_that_would_widen_the_blast_radius() {
        assert!(signal_group(0, 0).is_err());
        assert!(signal_group(1, 0).is_err());
        assert!(signal_group(u32::MAX, 0).is_err());
    }

    #[test]
    fn names_common_signals() {
        assert_eq!(signal_name(SIGKILL), "SIGKILL");
        assert_eq!(signal_name(SIGTERM), "SIGTERM");
        assert_eq!(signal_name(1000), "signal 1000");
    }
}
