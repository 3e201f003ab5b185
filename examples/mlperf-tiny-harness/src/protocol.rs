//! The benchmark's side of the protocol: our Rust rendering of MLCommons tiny's
//! `benchmark/api/internally_implemented.cpp` (EEMBC's ee_lib: the command buffer, the parser,
//! `db`, `infer`, `results`) and of the message formats in `internally_implemented.h` and
//! `submitter_implemented.h`, followed as of mlcommons/tiny commit 1afd2c98. The reply texts
//! are the reference's, byte for byte (its spelling included: the runner and logs match on
//! them).
//!
//! Where the reference reads or writes past a buffer (more `db` bytes than it holds, an empty
//! command) this code replies with an `e-[...]` line instead: the firmware never panics and
//! never overruns.

use crate::board;
use crate::out::{decimal, hex2, text};

/// `EE_CMD_SIZE`: longer commands keep their first 80 characters.
pub const CMD_SIZE: usize = 80;
/// `EE_CMD_TERMINATOR`.
pub const TERMINATOR: u8 = b'%';
/// `EE_FW_VERSION`, reported by `profile`.
const FW_VERSION: &[u8] = b"ULPMark for tinyML Firmware V0.0.1";
/// `TH_VENDOR_NAME_STRING`: `name` replies `m-name-dut-[kiln]`.
const VENDOR_NAME: &[u8] = b"kiln";

/// What the submitter implements (the `th_*` functions of `submitter_implemented.h` that the
/// parser calls).
pub trait Submitter {
    /// `th_load_tensor`: the `db` bytes to the model's input.
    fn load_tensor(&mut self, db: &[u8]);
    /// `th_infer`: one inference.
    fn infer(&mut self);
    /// `th_results`: the `m-results-[...]` line.
    fn results(&mut self);
    /// `th_pre` / `th_post`: around the measured inferences.
    fn pre(&mut self) {}
    fn post(&mut self) {}
}

/// `th_timestamp` in performance mode: `EE_MSG_TIMESTAMP`, "m-lap-us-%lu\r\n".
pub fn timestamp() {
    text(b"m-lap-us-");
    decimal(board::micros());
    text(b"\r\n");
}

/// `th_timestamp_initialize`: the mode line, then a first timestamp.
pub fn timestamp_initialize() {
    board::timer_initialize();
    text(b"m-timestamp-mode-performance\r\n");
    timestamp();
}

/// `ee_serial_callback`'s command buffer and `gp_buff` with its size and load position.
pub struct Monitor<const N: usize> {
    command: heapless::Vec<u8, CMD_SIZE>,
    /// The bytes loaded so far (`g_buff_pos` is its length); capacity: the model's input.
    db: heapless::Vec<u8, N>,
    /// `g_buff_size`: the byte count `db load` announced.
    db_size: usize,
}

impl<const N: usize> Monitor<N> {
    pub const fn new() -> Self {
        Self {
            command: heapless::Vec::new(),
            db: heapless::Vec::new(),
            db_size: 0,
        }
    }

    /// `ee_serial_callback`: one received character. On the terminator the command runs
    /// (`th_command_ready` then `ee_serial_command_parser_callback`, here in the main loop,
    /// never in an interrupt). Carriage returns and line feeds are dropped, so a terminal's
    /// Enter does not become part of the next command.
    pub fn receive(&mut self, c: u8, submitter: &mut impl Submitter) {
        match c {
            TERMINATOR => {
                let command = core::mem::take(&mut self.command);
                self.dispatch(&command, submitter);
            }
            b'\r' | b'\n' => {}
            _ => {
                // Past EE_CMD_SIZE characters the reference overwrites its last slot and
                // then terminates there: the first 80 characters survive.
                let _ = self.command.push(c);
            }
        }
    }

    /// `ee_serial_command_parser_callback`: `name`, `timestamp`, then the profile's commands;
    /// every command ends with `m-ready`.
    fn dispatch(&mut self, command: &[u8], submitter: &mut impl Submitter) {
        let mut tokens = Tokens(command);
        let tok = tokens.next().unwrap_or(b"");
        if tok == b"name" {
            text(b"m-name-dut-[");
            text(VENDOR_NAME);
            text(b"]\r\n");
        } else if tok == b"timestamp" {
            timestamp();
        } else if !self.profile_parse(tok, &mut tokens, submitter) {
            text(b"e-[Unknown command: ");
            text(tok);
            text(b"]\r\n");
        }
        text(b"m-ready\r\n");
    }

    /// `ee_profile_parse`: `profile`, `help`, `db`, `infer`, `results`. Returns whether the
    /// command was claimed.
    fn profile_parse(
        &mut self,
        tok: &[u8],
        tokens: &mut Tokens<'_>,
        submitter: &mut impl Submitter,
    ) -> bool {
        if tok == b"profile" {
            text(b"m-profile-[");
            text(FW_VERSION);
            text(b"]\r\nm-model-[");
            text(crate::config::MODEL_VERSION.as_bytes());
            text(b"]\r\n");
        } else if tok == b"help" {
            help();
        } else if tok == b"db" {
            self.buffer_parse(tokens);
        } else if tok == b"infer" {
            let (mut n, mut warmups) = (1usize, 10usize);
            if let Some(arg) = tokens.next() {
                let i = atoi(arg);
                if i <= 0 {
                    text(b"e-[Inference iterations must be >0]\r\n");
                    return true;
                }
                n = i as usize;
                if let Some(arg) = tokens.next() {
                    let i = atoi(arg);
                    if i < 0 {
                        text(b"e-[Inference warmup must be >=0]\r\n");
                        return true;
                    }
                    warmups = i as usize;
                }
            }
            self.infer(n, warmups, submitter);
        } else if tok == b"results" {
            submitter.results();
        } else {
            return false;
        }
        true
    }

    /// `ee_infer`: load the tensor, W warm-up inferences, then N between two timestamps, then
    /// the results.
    fn infer(&mut self, n: usize, warmups: usize, submitter: &mut impl Submitter) {
        submitter.load_tensor(&self.db);
        text(b"m-warmup-start-");
        decimal(warmups as u64);
        text(b"\r\n");
        for _ in 0..warmups {
            submitter.infer();
        }
        text(b"m-warmup-done\r\nm-infer-start-");
        decimal(n as u64);
        text(b"\r\n");
        timestamp();
        submitter.pre();
        for _ in 0..n {
            submitter.infer();
        }
        submitter.post();
        timestamp();
        text(b"m-infer-done\r\n");
        submitter.results();
    }

    /// `ee_buffer_parse`: `db load N`, `db print`, `db HH[HH]*`.
    fn buffer_parse(&mut self, tokens: &mut Tokens<'_>) {
        let Some(sub) = tokens.next() else {
            text(b"e-[Command 'db' requires a subcommand]\r\n");
            return;
        };
        if sub == b"load" {
            let Some(arg) = tokens.next() else {
                text(b"e-[Command 'db load' requires the # of bytes]\r\n");
                return;
            };
            let requested = atoi(arg);
            // C stores atoi's int in a size_t: a negative count is a huge one.
            self.db_size = requested as isize as usize;
            if self.db_size == 0 {
                text(b"e-[Command 'db load' must be >0 bytes]\r\n");
                return;
            }
            self.db.clear();
            if self.db_size > N {
                text(b"Supplied buffer size ");
                signed(requested);
                text(b" exceeds maximum of ");
                decimal(N as u64);
                text(b"\n");
            } else {
                text(b"m-[Expecting ");
                decimal(self.db_size as u64);
                text(b" bytes]\r\n");
            }
        } else if sub == b"print" {
            self.print();
        } else {
            self.load_hex(sub);
        }
    }

    /// `db print`: the announced bytes, eight per `m-buffer-` line (only those loaded: the
    /// reference also prints whatever an earlier load left behind).
    fn print(&self) {
        const PER_LINE: usize = 8;
        let bytes = self
            .db
            .get(..self.db_size.min(self.db.len()))
            .unwrap_or(&[]);
        let count = bytes.len();
        for (i, &byte) in bytes.iter().enumerate() {
            if i % PER_LINE == 0 {
                text(b"m-buffer-");
            }
            hex2(byte);
            if (i + 1) % PER_LINE == 0 || i + 1 == count {
                text(b"\r\n");
            } else {
                text(b"-");
            }
        }
        if count % PER_LINE != 0 {
            text(b"\r\n");
        }
    }

    /// `db HH[HH]*`: two hex digits per byte, appended until the announced count.
    fn load_hex(&mut self, digits: &[u8]) {
        if !digits.len().is_multiple_of(2) {
            text(b"e-[Insufficent number of hex digits]\r\n");
            return;
        }
        for pair in digits.chunks_exact(2) {
            let Some(byte) = hexdec(pair) else {
                text(b"e-[Invalid hex digit '");
                text(pair);
                text(b"']\r\n");
                return;
            };
            if self.db.push(byte).is_err() {
                // The reference writes past its buffer here.
                text(b"e-[db buffer full: ");
                decimal(N as u64);
                text(b" bytes]\r\n");
                return;
            }
            if self.db.len() == self.db_size {
                text(b"m-load-done\r\n");
                // The rest of the digits is disregarded.
                return;
            }
        }
    }
}

/// `help`: the commands, in our words.
fn help() {
    text(FW_VERSION);
    text(b"\r\n\r\n");
    text(b"help         : this list\r\n");
    text(b"name         : the device's name\r\n");
    text(b"timestamp    : a timestamp (m-lap-us-N)\r\n");
    text(b"db load N    : expect N input bytes\r\n");
    text(b"db HH[HH]*   : input bytes in hex, until N\r\n");
    text(b"db print     : the loaded bytes in hex\r\n");
    text(b"infer N [W=10]: W warm-up inferences, then N timed ones, then the results\r\n");
    text(b"results      : the scores of the last inference\r\n");
}

/// `%d` of a signed value.
fn signed(value: i32) {
    if value < 0 {
        text(b"-");
    }
    decimal(u64::from(value.unsigned_abs()));
}

/// `strtok(.., " ")`: tokens separated by runs of spaces.
struct Tokens<'a>(&'a [u8]);

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.0.iter().position(|&c| c != b' ')?;
        let rest = self.0.get(start..)?;
        let end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        let (token, tail) = rest.split_at_checked(end)?;
        self.0 = tail;
        Some(token)
    }
}

/// C's `atoi`: leading white space, an optional sign, then digits up to the first non-digit
/// (0 if none). Saturates where C's is undefined.
fn atoi(s: &[u8]) -> i32 {
    let mut rest = s;
    while let Some((&c, tail)) = rest.split_first() {
        if !matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
            break;
        }
        rest = tail;
    }
    let negative = match rest.first() {
        Some(b'-') => true,
        Some(b'+') => false,
        _ => {
            return digits_value(rest, false);
        }
    };
    digits_value(rest.get(1..).unwrap_or(&[]), negative)
}

fn digits_value(s: &[u8], negative: bool) -> i32 {
    let mut value: i64 = 0;
    for &c in s.iter().take_while(|c| c.is_ascii_digit()) {
        value = (value * 10 + i64::from(c - b'0')).min(1 << 32);
    }
    let value = if negative { -value } else { value };
    value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// `ee_hexdec` of two characters (either case).
fn hexdec(pair: &[u8]) -> Option<u8> {
    let mut value = 0u8;
    for &c in pair {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        value = (value << 4) | digit;
    }
    Some(value)
}
