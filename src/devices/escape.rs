//! The console escape, as QEMU's `-nographic` has it: with stdin a
//! terminal (raw mode, so Ctrl-C goes to the guest), Ctrl-A starts a
//! command for tinyvmm instead of the guest:
//!
//! | keys | does |
//! |---|---|
//! | Ctrl-A x | ends the VM (exit 130, as Ctrl-C would end a program) |
//! | Ctrl-A h | prints this help on stderr |
//! | Ctrl-A Ctrl-A | sends one Ctrl-A to the guest |
//!
//! Any other key after Ctrl-A reaches the guest with the Ctrl-A before it.
//! Input from a pipe or a file passes through untouched.

/// Ctrl-A.
pub const CTRL_A: u8 = 0x01;

/// The help `Ctrl-A h` prints (raw terminal: lines end in CR LF).
pub const HELP: &str = "tinyvmm: console escape: Ctrl-A x ends the VM, Ctrl-A h prints this help, \
                        Ctrl-A Ctrl-A sends Ctrl-A to the guest\r";

/// What a command asks of the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscapeAction {
    /// End the VM.
    Quit,
    /// Print `HELP`.
    Help,
}

/// The escape state between reads (a Ctrl-A may end one read).
#[derive(Debug, Default)]
pub struct Escape {
    pending: bool,
}

impl Escape {
    /// Moves `input` to `out`, taking out escape commands; returns the
    /// commands in the order typed. Bytes after a Quit are dropped.
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) -> Vec<EscapeAction> {
        let mut actions = Vec::new();
        for &b in input {
            if !self.pending {
                if b == CTRL_A {
                    self.pending = true;
                } else {
                    out.push(b);
                }
                continue;
            }
            self.pending = false;
            match b {
                b'x' | b'X' => {
                    actions.push(EscapeAction::Quit);
                    break;
                }
                b'h' | b'H' | b'?' => actions.push(EscapeAction::Help),
                CTRL_A => out.push(CTRL_A),
                other => out.extend_from_slice(&[CTRL_A, other]),
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<EscapeAction>) {
        let mut e = Escape::default();
        let (mut out, mut acts) = (Vec::new(), Vec::new());
        for c in chunks {
            acts.extend(e.filter(c, &mut out));
        }
        (out, acts)
    }

    #[test]
    fn commands_are_taken_out_and_the_rest_passes() {
        assert_eq!(run(&[b"ls\r"]), (b"ls\r".to_vec(), vec![]));
        assert_eq!(
            run(&[b"a\x01hb"]),
            (b"ab".to_vec(), vec![EscapeAction::Help])
        );
        assert_eq!(run(&[b"a\x01\x01b"]), (b"a\x01b".to_vec(), vec![]));
        assert_eq!(run(&[b"a\x01cb"]), (b"a\x01cb".to_vec(), vec![]));
        assert_eq!(
            run(&[b"a\x01xdropped"]),
            (b"a".to_vec(), vec![EscapeAction::Quit])
        );
    }

    #[test]
    fn a_command_split_across_reads_still_works() {
        assert_eq!(
            run(&[b"a\x01", b"x"]),
            (b"a".to_vec(), vec![EscapeAction::Quit])
        );
        assert_eq!(run(&[b"\x01", b"\x01", b"z"]), (b"\x01z".to_vec(), vec![]));
    }
}
