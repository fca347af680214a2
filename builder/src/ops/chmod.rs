//! `COPY --chmod` / `ADD --chmod`: the permission bits given to every copied file and directory.
//!
//! Two forms are accepted, as in BuildKit (which parses the value with
//! `tonistiigi/dchapes-mode`, a port of BSD's `setmode(3)`):
//!
//! - octal (`0755`, `644`, at most `7777`): the permission bits of the entry become exactly these;
//! - symbolic, as chmod(1) writes them: comma-separated clauses `[ugoa]*([-+=]([rwxXst]*|[ugo]))+`.
//!   BSD semantics throughout: with no "who", `+`/`-` bits are masked by the builder's umask
//!   (BuildKit's daemon runs with 022, which is assumed here, so `+w` is `u+w`), while `=` first
//!   clears every bit; `X` only works with `+` and looks at the mode the entry had before the
//!   whole `--chmod` (execute set for anyone, or a directory); `s` and `t` are ignored for `o`
//!   alone; `g=u` copies a class.
//!
//! Symlinks are never chmodded (their mode stays 0777), as in fsutil's `copyFileInfo`.

use crate::graph::Chmod;

/// Why a `--chmod` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmodError {
    /// The value is neither octal nor a valid symbolic mode.
    #[error("invalid --chmod `{text}`: {reason}")]
    Invalid {
        /// The value as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The umask BuildKit's daemon applies to "who"-less symbolic clauses.
const UMASK: u32 = 0o022;
const SETID: u32 = 0o6000;
const STICKY: u32 = 0o1000;
/// setuid, setgid and all rwx bits (BSD's `STANDARD_BITS`).
const STANDARD: u32 = 0o6777;
const WHO_U: u32 = 0o4700;
const WHO_G: u32 = 0o2070;
const WHO_O: u32 = 0o0007;

/// One compiled operation (BSD's `bitcmd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    /// Set `bits`.
    Plus(u32),
    /// Clear `bits`.
    Minus(u32),
    /// Set `bits` if the original mode had an execute bit or is a directory.
    X(u32),
    /// Copy the rwx triple of class `from` (`u`, `g` or `o`) into the classes of `to`
    /// (`[u, g, o]`), clearing first and/or setting, within `bits`.
    Copy {
        from: u8,
        to: [bool; 3],
        clear: bool,
        set: bool,
        bits: u32,
    },
}

/// A parsed `--chmod`, ready to apply to entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeSpec {
    cmds: Vec<Cmd>,
}

impl ModeSpec {
    /// Parse a `--chmod` value from the step graph.
    pub fn parse(chmod: &Chmod) -> Result<Self, ChmodError> {
        match chmod {
            Chmod::Octal(bits) => {
                if *bits > 0o7777 {
                    return Err(ChmodError::Invalid {
                        text: format!("{bits:o}"),
                        reason: "it should be octal string and between 0 and 07777".into(),
                    });
                }
                Ok(ModeSpec {
                    cmds: vec![Cmd::Minus(0o7777), Cmd::Plus(*bits)],
                })
            }
            Chmod::Symbolic(text) => Self::parse_text(text),
        }
    }

    /// Parse a value as written after `--chmod=` (octal or symbolic).
    pub fn parse_text(text: &str) -> Result<Self, ChmodError> {
        let invalid = |reason: &str| ChmodError::Invalid {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let b = text.as_bytes();
        match b.first() {
            None => return Err(invalid("empty mode")),
            Some(d) if d.is_ascii_digit() => {
                let bits = u32::from_str_radix(text, 8)
                    .map_err(|_| invalid("it should be octal string and between 0 and 07777"))?;
                return Self::parse(&Chmod::Octal(bits));
            }
            Some(_) => {}
        }
        let mask = !UMASK & 0o7777;
        let mut cmds = Vec::new();
        let add = |cmds: &mut Vec<Cmd>, op: u8, who: u32, arg: u32| match op {
            b'=' | b'+' | b'-' | b'X' => {
                let mut op = op;
                if op == b'=' {
                    cmds.push(Cmd::Minus(if who != 0 { who } else { STANDARD }));
                    op = b'+';
                }
                let bits = if who != 0 { who & arg } else { mask & arg };
                cmds.push(match op {
                    b'+' => Cmd::Plus(bits),
                    b'-' => Cmd::Minus(bits),
                    _ => Cmd::X(bits),
                });
            }
            from => {
                let (to, bits) = if who != 0 {
                    (
                        [who & 0o400 != 0, who & 0o040 != 0, who & 0o004 != 0],
                        0o7777,
                    )
                } else {
                    ([true; 3], mask)
                };
                let arg = arg as u8;
                cmds.push(Cmd::Copy {
                    from,
                    to,
                    clear: arg == b'-' || arg == b'=',
                    set: arg == b'+' || arg == b'=',
                    bits,
                });
            }
        };
        let mut i = 0;
        loop {
            let mut who = 0u32;
            while i < b.len() {
                who |= match b[i] {
                    b'a' => STANDARD,
                    b'u' => WHO_U,
                    b'g' => WHO_G,
                    b'o' => WHO_O,
                    _ => break,
                };
                i += 1;
            }
            let mut equal_done = false;
            loop {
                // getop
                let Some(&op) = b.get(i) else {
                    return Err(invalid("expected `+`, `-` or `=`"));
                };
                i += 1;
                match op {
                    b'+' | b'-' => {}
                    b'=' => equal_done = false,
                    _ => return Err(invalid(&format!("unexpected `{}`", op as char))),
                }
                who &= !STICKY;
                let (mut perm, mut perm_x) = (0u32, 0u32);
                loop {
                    let c = b.get(i).copied().unwrap_or(0);
                    match c {
                        b'r' => perm |= 0o444,
                        b'w' => perm |= 0o222,
                        b'x' => perm |= 0o111,
                        b'X' => {
                            if op == b'+' {
                                perm_x = 0o111;
                            }
                        }
                        b's' => {
                            if who == 0 || who & !WHO_O != 0 {
                                perm |= SETID;
                            }
                        }
                        b't' => {
                            if who == 0 || who & !WHO_O != 0 {
                                who |= STICKY;
                                perm |= STICKY;
                            }
                        }
                        b'u' | b'g' | b'o' => {
                            if perm != 0 {
                                add(&mut cmds, op, who, perm);
                                perm = 0;
                            }
                            if op == b'=' {
                                equal_done = true;
                            }
                            if perm_x != 0 {
                                add(&mut cmds, b'X', who, perm_x);
                                perm_x = 0;
                            }
                            add(&mut cmds, c, who, u32::from(op));
                        }
                        _ => {
                            if perm != 0 || (op == b'=' && !equal_done) {
                                add(&mut cmds, op, who, perm);
                            }
                            if perm_x != 0 {
                                add(&mut cmds, b'X', who, perm_x);
                            }
                            break;
                        }
                    }
                    i += 1;
                }
                match b.get(i) {
                    None => return Ok(ModeSpec { cmds }),
                    Some(b',') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// The new permission bits (`0o7777`) of an entry whose current bits are `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let original = mode & 0o7777;
        let mut m = original;
        for cmd in &self.cmds {
            match *cmd {
                Cmd::Plus(bits) => m |= bits,
                Cmd::Minus(bits) => m &= !bits,
                Cmd::X(bits) => {
                    if original & 0o111 != 0 || is_dir {
                        m |= bits;
                    }
                }
                Cmd::Copy {
                    from,
                    to,
                    clear,
                    set,
                    bits,
                } => {
                    let value = match from {
                        b'u' => (m >> 6) & 7,
                        b'g' => (m >> 3) & 7,
                        _ => m & 7,
                    };
                    let shifts = [6, 3, 0];
                    if clear {
                        let clr = if set { 7 } else { value };
                        for (k, shift) in shifts.iter().enumerate() {
                            if to[k] {
                                m &= !((clr << shift) & bits);
                            }
                        }
                    }
                    if set {
                        for (k, shift) in shifts.iter().enumerate() {
                            if to[k] {
                                m |= (value << shift) & bits;
                            }
                        }
                    }
                }
            }
        }
        m & 0o7777
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! chmod_case {
        ($name:ident, $spec:expr, $mode:expr, $dir:expr, $want:expr) => {
            #[test]
            fn $name() {
                let spec = ModeSpec::parse_text($spec).expect("valid spec");
                assert_eq!(spec.apply($mode, $dir), $want, "{} on {:o}", $spec, $mode);
            }
        };
    }

    chmod_case!(octal_replaces_bits, "0755", 0o644, false, 0o755);
    chmod_case!(octal_without_zero, "640", 0o777, false, 0o640);
    chmod_case!(octal_setuid, "4755", 0o644, false, 0o4755);
    chmod_case!(user_exec, "u+x", 0o644, false, 0o744);
    chmod_case!(group_no_write, "g-w", 0o664, false, 0o644);
    chmod_case!(two_clauses, "u+x,g-w", 0o664, false, 0o744);
    chmod_case!(empty_who_exec_is_all, "+x", 0o644, false, 0o755);
    chmod_case!(
        empty_who_write_is_masked_by_umask,
        "+w",
        0o444,
        false,
        0o644
    );
    chmod_case!(
        empty_who_equals_clears_everything,
        "=r",
        0o4777,
        false,
        0o444
    );
    chmod_case!(other_equals, "o=r", 0o777, false, 0o774);
    chmod_case!(go_equals_nothing, "go=", 0o777, false, 0o700);
    chmod_case!(big_x_only_with_plus, "a=rX", 0o640, true, 0o444);
    chmod_case!(all_read_plus_big_x_dir, "a=r,a+X", 0o640, true, 0o555);
    chmod_case!(big_x_on_plain_file, "a+X", 0o644, false, 0o644);
    chmod_case!(big_x_on_exec_file, "a+X", 0o744, false, 0o755);
    chmod_case!(big_x_uses_the_original_mode, "a-x,a+X", 0o744, false, 0o755);
    chmod_case!(setgid, "g+s", 0o755, true, 0o2755);
    chmod_case!(sticky, "+t", 0o777, true, 0o1777);
    chmod_case!(sticky_ignored_for_other_only, "o+t", 0o777, true, 0o777);
    chmod_case!(copy_class, "g=u", 0o740, false, 0o770);
    chmod_case!(copy_then_remove, "go=u-w", 0o755, false, 0o755);
    chmod_case!(chained_ops, "u=rw+x", 0o000, false, 0o700);

    #[test]
    fn invalid_specs_are_errors() {
        for bad in ["", "u", "u+q", "z+x", "u+x,", "99999", "8", "+x,,"] {
            assert!(ModeSpec::parse_text(bad).is_err(), "{bad}");
        }
        assert!(ModeSpec::parse(&Chmod::Octal(0o17777)).is_err());
    }
}
