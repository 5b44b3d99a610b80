//! The local terminal: raw and key-at-a-time modes that are restored when the guard drops, and
//! the window size.

use std::io::{self, IsTerminal};
use std::os::fd::AsRawFd;

use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

nix::ioctl_read_bad!(read_window_size, libc::TIOCGWINSZ, libc::winsize);

/// Puts stdin's terminal back the way it was when dropped.
pub struct TerminalModeGuard {
    original: Termios,
}

impl TerminalModeGuard {
    /// Raw mode for `exec -it`: every byte, Ctrl-C included, goes to the remote terminal.
    pub fn raw() -> nix::Result<TerminalModeGuard> {
        let original = termios::tcgetattr(io::stdin())?;
        let mut raw = original.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(io::stdin(), SetArg::TCSANOW, &raw)?;
        Ok(TerminalModeGuard { original })
    }

    /// Keys arrive one at a time without echo, and Ctrl-C still interrupts (`ward top`).
    pub fn single_keys() -> nix::Result<TerminalModeGuard> {
        let original = termios::tcgetattr(io::stdin())?;
        let mut single_keys = original.clone();
        single_keys
            .local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        single_keys.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        single_keys.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcsetattr(io::stdin(), SetArg::TCSANOW, &single_keys)?;
        Ok(TerminalModeGuard { original })
    }
}

impl TerminalModeGuard {
    /// Lines as usual but without echo, for typing a password.
    pub fn no_echo() -> nix::Result<TerminalModeGuard> {
        let original = termios::tcgetattr(io::stdin())?;
        let mut hidden = original.clone();
        hidden.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(io::stdin(), SetArg::TCSANOW, &hidden)?;
        Ok(TerminalModeGuard { original })
    }
}

impl Drop for TerminalModeGuard {
    fn drop(&mut self) {
        // Nothing more can be done if this fails; the shell's `reset` is the user's way out.
        let _ = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, &self.original);
    }
}

/// Columns and rows of the terminal on stdin (or stdout), when there is one.
pub fn window_size() -> Option<(u16, u16)> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let descriptor = if stdin.is_terminal() {
        stdin.as_raw_fd()
    } else if stdout.is_terminal() {
        stdout.as_raw_fd()
    } else {
        return None;
    };
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into `size`, which lives for the whole call, and
    // `descriptor` belongs to stdin or stdout, which stay open.
    let result = unsafe { read_window_size(descriptor, &mut size) };
    match result {
        Ok(_) if size.ws_col > 0 && size.ws_row > 0 => Some((size.ws_col, size.ws_row)),
        _ => None,
    }
}
