//! `fsm sim`'s flags, parsed the way `malloc.py`'s `optparse` parses them.
//!
//! ```text
//!   argv --> parse() --+--> Options             (run the simulation)
//!                      +--> Parse::Help(text)   (print to stdout, exit 0)
//!                      +--> Parse::Usage(msg)   (usage + "fsm sim: error: msg" on stderr, exit 2)
//! ```
//!
//! What optparse does, and so this module does:
//! * short options cluster (`-cC`), take their value attached or as the next word (`-s5`,
//!   `-s 5`), and the next word is taken even when it starts with `-` (`-s -2`, `-A -0`);
//! * long options take `--seed=5` or `--seed 5`, and any unambiguous prefix (`--se 5`);
//! * the last occurrence of an option wins; `--` ends the options; other words are ignored;
//! * integers are read like optparse's `int` type: `0x1f` hex, `0b101` binary, a leading `0`
//!   octal (`010` is 8, `08` is an error), otherwise decimal, with Python's `int()` rules for
//!   signs, surrounding blanks and `_` between digits;
//! * errors read `option -s: invalid integer value: 'x'`, `no such option: -x`,
//!   `ambiguous option: --s (--seed, --size, --svg?)`, `-s option requires 1 argument`,
//!   `--coalesce option does not take a value`, after a usage line, with exit status 2.
//!
//! `--svg FILE`, `--offsets-only` and `--granule N` are this tool's additions; `-p/--policy` also
//! accepts a policy name (`next-fit`, ...) besides malloc.py's `BEST`, `WORST` and `FIRST`.

/// The parsed flags: malloc.py's thirteen plus this tool's additions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-s/--seed`.
    pub seed: i128,
    /// `-S/--size`.
    pub size: i128,
    /// `-b/--baseAddr`.
    pub base: i128,
    /// `-H/--headerSize`.
    pub header: i128,
    /// `-a/--alignment`.
    pub align: i128,
    /// `-p/--policy`, as given.
    pub policy: String,
    /// `-l/--listOrder`, as given.
    pub order: String,
    /// `-C/--coalesce`.
    pub coalesce: bool,
    /// `-n/--numOps`.
    pub num_ops: i128,
    /// `-r/--range`.
    pub range: i128,
    /// `-P/--percentAlloc`.
    pub percent: i128,
    /// `-A/--allocList`, as given.
    pub alloc_list: String,
    /// `-c/--compute`.
    pub compute: bool,
    /// `--svg FILE` (this tool's addition).
    pub svg: Option<String>,
    /// `--offsets-only`: the policy's offset manager over `-S` offsets (this tool's addition).
    pub offsets_only: bool,
    /// `--granule N`: the offset manager's smallest unit (this tool's addition; 16 if not
    /// given).
    pub granule: Option<i128>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 0,
            size: 100,
            base: 1000,
            header: 0,
            align: -1,
            policy: "BEST".into(),
            order: "ADDRSORT".into(),
            coalesce: false,
            num_ops: 10,
            range: 10,
            percent: 50,
            alloc_list: String::new(),
            compute: false,
            svg: None,
            offsets_only: false,
            granule: None,
        }
    }
}

/// What parsing ended in, other than a set of options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// `-h/--help`: this text goes to stdout and the exit status is 0.
    Help(String),
    /// A usage error: optparse's message (without the `error:` prefix); exit status 2.
    Usage(String),
}

/// The usage line optparse prints before an error.
pub const USAGE: &str = "Usage: fsm sim [options]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Str,
    Flag,
    Help,
}

#[derive(Debug, Clone, Copy)]
enum Dest {
    Seed,
    Size,
    Base,
    Header,
    Align,
    Policy,
    Order,
    Coalesce,
    NumOps,
    Range,
    Percent,
    AllocList,
    Compute,
    Svg,
    OffsetsOnly,
    Granule,
    Help,
}

struct Spec {
    short: Option<char>,
    long: &'static str,
    kind: Kind,
    dest: Dest,
    metavar: &'static str,
    help: &'static str,
}

/// The option table, in malloc.py's order (which is also `-h`'s order).
const SPECS: &[Spec] = &[
    Spec {
        short: Some('h'),
        long: "help",
        kind: Kind::Help,
        dest: Dest::Help,
        metavar: "",
        help: "show this help message and exit",
    },
    Spec {
        short: Some('s'),
        long: "seed",
        kind: Kind::Int,
        dest: Dest::Seed,
        metavar: "SEED",
        help: "the random seed",
    },
    Spec {
        short: Some('S'),
        long: "size",
        kind: Kind::Int,
        dest: Dest::Size,
        metavar: "HEAPSIZE",
        help: "size of the heap",
    },
    Spec {
        short: Some('b'),
        long: "baseAddr",
        kind: Kind::Int,
        dest: Dest::Base,
        metavar: "BASEADDR",
        help: "base address of heap",
    },
    Spec {
        short: Some('H'),
        long: "headerSize",
        kind: Kind::Int,
        dest: Dest::Header,
        metavar: "HEADERSIZE",
        help: "size of the header",
    },
    Spec {
        short: Some('a'),
        long: "alignment",
        kind: Kind::Int,
        dest: Dest::Align,
        metavar: "ALIGNMENT",
        help: "align allocated units to size; -1->no align",
    },
    Spec {
        short: Some('p'),
        long: "policy",
        kind: Kind::Str,
        dest: Dest::Policy,
        metavar: "POLICY",
        help: "list search (BEST, WORST, FIRST); or a policy to show step by step: see --policy list",
    },
    Spec {
        short: Some('l'),
        long: "listOrder",
        kind: Kind::Str,
        dest: Dest::Order,
        metavar: "ORDER",
        help: "list order (ADDRSORT, SIZESORT+, SIZESORT-, INSERT-FRONT, INSERT-BACK)",
    },
    Spec {
        short: Some('C'),
        long: "coalesce",
        kind: Kind::Flag,
        dest: Dest::Coalesce,
        metavar: "",
        help: "coalesce the free list?",
    },
    Spec {
        short: Some('n'),
        long: "numOps",
        kind: Kind::Int,
        dest: Dest::NumOps,
        metavar: "OPSNUM",
        help: "number of random ops to generate",
    },
    Spec {
        short: Some('r'),
        long: "range",
        kind: Kind::Int,
        dest: Dest::Range,
        metavar: "OPSRANGE",
        help: "max alloc size",
    },
    Spec {
        short: Some('P'),
        long: "percentAlloc",
        kind: Kind::Int,
        dest: Dest::Percent,
        metavar: "OPSPALLOC",
        help: "percent of ops that are allocs",
    },
    Spec {
        short: Some('A'),
        long: "allocList",
        kind: Kind::Str,
        dest: Dest::AllocList,
        metavar: "OPSLIST",
        help: "instead of random, list of ops (+10,-0,etc)",
    },
    Spec {
        short: Some('c'),
        long: "compute",
        kind: Kind::Flag,
        dest: Dest::Compute,
        metavar: "",
        help: "compute answers for me",
    },
    Spec {
        short: None,
        long: "svg",
        kind: Kind::Str,
        dest: Dest::Svg,
        metavar: "FILE",
        help: "also draw the heap after every op into FILE (SVG)",
    },
    Spec {
        short: None,
        long: "offsets-only",
        kind: Kind::Flag,
        dest: Dest::OffsetsOnly,
        metavar: "",
        help: "with -p NAME: the policy's offset manager (nothing stored in the space)",
    },
    Spec {
        short: None,
        long: "granule",
        kind: Kind::Int,
        dest: Dest::Granule,
        metavar: "BYTES",
        help: "with --offsets-only: the smallest unit handed out (default 16)",
    },
];

/// Parses `args` (the words after `sim`) as malloc.py's optparse would.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Options, Parse> {
    let mut o = Options::default();
    let mut rest: std::collections::VecDeque<String> =
        args.iter().map(|a| a.as_ref().to_owned()).collect();
    while let Some(arg) = rest.pop_front() {
        if arg == "--" {
            break;
        } else if let Some(body) = arg.strip_prefix("--") {
            let (name, explicit) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let spec = match_long(name)?;
            let opt = format!("--{}", spec.long);
            if spec.kind == Kind::Help {
                // optparse processes --help=x as a value error before help; either way: help.
                if explicit.is_some() {
                    return Err(Parse::Usage(format!("{opt} option does not take a value")));
                }
                return Err(Parse::Help(help_text()));
            }
            let value = if takes_value(spec.kind) {
                match explicit {
                    Some(v) => Some(v),
                    None => Some(rest.pop_front().ok_or_else(|| {
                        Parse::Usage(format!("{opt} option requires 1 argument"))
                    })?),
                }
            } else if explicit.is_some() {
                return Err(Parse::Usage(format!("{opt} option does not take a value")));
            } else {
                None
            };
            store(&mut o, spec, &opt, value)?;
        } else if arg.len() > 1 && arg.starts_with('-') {
            let chars: Vec<char> = arg.chars().collect();
            let mut i = 1;
            while i < chars.len() {
                let ch = chars[i];
                i += 1;
                let opt = format!("-{ch}");
                let spec = SPECS
                    .iter()
                    .find(|s| s.short == Some(ch))
                    .ok_or_else(|| Parse::Usage(format!("no such option: {opt}")))?;
                if spec.kind == Kind::Help {
                    return Err(Parse::Help(help_text()));
                }
                if takes_value(spec.kind) {
                    let value = if i < chars.len() {
                        chars[i..].iter().collect()
                    } else {
                        rest.pop_front().ok_or_else(|| {
                            Parse::Usage(format!("{opt} option requires 1 argument"))
                        })?
                    };
                    store(&mut o, spec, &opt, Some(value))?;
                    break;
                }
                store(&mut o, spec, &opt, None)?;
            }
        }
        // Any other word is a positional argument: optparse collects it and malloc.py ignores it.
    }
    Ok(o)
}

fn takes_value(kind: Kind) -> bool {
    matches!(kind, Kind::Int | Kind::Str)
}

/// optparse's `_match_abbrev`: an exact name, else the single name that starts with `name`.
fn match_long(name: &str) -> Result<&'static Spec, Parse> {
    if let Some(s) = SPECS.iter().find(|s| s.long == name) {
        return Ok(s);
    }
    let mut hits: Vec<&Spec> = SPECS.iter().filter(|s| s.long.starts_with(name)).collect();
    match hits.len() {
        1 => Ok(hits[0]),
        0 => Err(Parse::Usage(format!("no such option: --{name}"))),
        _ => {
            hits.sort_by(|a, b| a.long.cmp(b.long));
            let names: Vec<String> = hits.iter().map(|s| format!("--{}", s.long)).collect();
            Err(Parse::Usage(format!(
                "ambiguous option: --{name} ({}?)",
                names.join(", ")
            )))
        }
    }
}

fn store(o: &mut Options, spec: &Spec, opt: &str, value: Option<String>) -> Result<(), Parse> {
    let int = |v: &str| {
        optparse_int(v).ok_or_else(|| {
            Parse::Usage(format!(
                "option {opt}: invalid integer value: {}",
                py_repr(v)
            ))
        })
    };
    let v = value.unwrap_or_default();
    match spec.dest {
        Dest::Seed => o.seed = int(&v)?,
        Dest::Size => o.size = int(&v)?,
        Dest::Base => o.base = int(&v)?,
        Dest::Header => o.header = int(&v)?,
        Dest::Align => o.align = int(&v)?,
        Dest::NumOps => o.num_ops = int(&v)?,
        Dest::Range => o.range = int(&v)?,
        Dest::Percent => o.percent = int(&v)?,
        Dest::Policy => o.policy = v,
        Dest::Order => o.order = v,
        Dest::AllocList => o.alloc_list = v,
        Dest::Svg => o.svg = Some(v),
        Dest::Granule => o.granule = Some(int(&v)?),
        Dest::OffsetsOnly => o.offsets_only = true,
        Dest::Coalesce => o.coalesce = true,
        Dest::Compute => o.compute = true,
        Dest::Help => {}
    }
    Ok(())
}

/// optparse's `int` type: the radix comes from the prefix, then Python's `int(text, radix)`.
pub fn optparse_int(text: &str) -> Option<i128> {
    let lower2: String = text
        .chars()
        .take(2)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower2 == "0x" {
        py_int(text, 16)
    } else if lower2 == "0b" {
        let rest: String = text.chars().skip(2).collect();
        py_int(if rest.is_empty() { "0" } else { &rest }, 2)
    } else if text.starts_with('0') {
        py_int(text, 8)
    } else {
        py_int(text, 10)
    }
}

/// Python's `int(text, radix)` for radix 2, 8, 10 or 16, on ASCII digits: surrounding
/// whitespace, one optional sign, the radix's own prefix (`0x`, `0o`, `0b`) where the radix has
/// one, and single underscores between digits (or right after the prefix). `None` where Python
/// raises `ValueError`, or where the value does not fit in an `i128` (Python's ints are unbounded).
pub fn py_int(text: &str, radix: u32) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let prefix = match radix {
        16 => Some("0x"),
        8 => Some("0o"),
        2 => Some("0b"),
        _ => None,
    };
    let mut digits = t;
    let mut after_prefix = false;
    if let Some(p) = prefix
        && t.len() >= 2
        && t[..2].eq_ignore_ascii_case(p)
    {
        digits = &t[2..];
        after_prefix = true;
    }
    let mut value: i128 = 0;
    let mut seen_digit = false;
    let mut prev_underscore = false;
    for (i, c) in digits.chars().enumerate() {
        if c == '_' {
            let allowed = if i == 0 {
                after_prefix
            } else {
                !prev_underscore
            };
            if !allowed {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        let d = c.to_digit(radix)?;
        value = value
            .checked_mul(i128::from(radix))?
            .checked_add(i128::from(d))?;
        seen_digit = true;
        prev_underscore = false;
    }
    if !seen_digit || prev_underscore {
        return None;
    }
    Some(if neg { -value } else { value })
}

/// Python's `repr()` of a string, as optparse's error messages show a bad value.
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The `-h` text, laid out as optparse lays it out.
pub fn help_text() -> String {
    let mut out = format!("{USAGE}\n\nOptions:\n");
    for s in SPECS {
        let names = match (s.short, s.kind) {
            (Some(c), Kind::Flag | Kind::Help) => format!("-{c}, --{}", s.long),
            (Some(c), _) => format!("-{c} {m}, --{}={m}", s.long, m = s.metavar),
            (None, Kind::Flag | Kind::Help) => format!("--{}", s.long),
            (None, _) => format!("--{}={}", s.long, s.metavar),
        };
        if names.len() <= 20 {
            out.push_str(&format!("  {names:<22}{}\n", s.help));
        } else {
            out.push_str(&format!("  {names}\n{:24}{}\n", "", s.help));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, Parse> {
        parse(args)
    }

    #[test]
    fn value_forms() {
        for args in [
            &["-s", "5"][..],
            &["-s5"],
            &["--seed=5"],
            &["--seed", "5"],
            &["--se", "5"],
            &["--see=5"],
        ] {
            assert_eq!(p(args).unwrap().seed, 5, "{args:?}");
        }
        assert_eq!(p(&["-s", "-2"]).unwrap().seed, -2);
        assert_eq!(p(&["-A", "-0"]).unwrap().alloc_list, "-0");
        assert_eq!(p(&["-A+1,-0"]).unwrap().alloc_list, "+1,-0");
        assert_eq!(p(&["--allocList="]).unwrap().alloc_list, "");
    }

    #[test]
    fn clusters_flags_and_last_wins() {
        let o = p(&["-cCs", "7", "-s", "8", "extra"]).unwrap();
        assert!(o.compute && o.coalesce);
        assert_eq!(o.seed, 8);
        let o = p(&["-cs7"]).unwrap();
        assert_eq!((o.compute, o.seed), (true, 7));
        let o = p(&["--", "-s", "9"]).unwrap();
        assert_eq!(o.seed, 0);
    }

    #[test]
    fn optparse_integers() {
        assert_eq!(optparse_int("010"), Some(8));
        assert_eq!(optparse_int("0x1F"), Some(31));
        assert_eq!(optparse_int("0b101"), Some(5));
        assert_eq!(optparse_int("0b"), Some(0));
        assert_eq!(optparse_int("0"), Some(0));
        assert_eq!(optparse_int("0o17"), Some(15));
        assert_eq!(optparse_int("08"), None);
        assert_eq!(optparse_int("-010"), Some(-10));
        assert_eq!(optparse_int(" 12 "), Some(12));
        assert_eq!(optparse_int("+12"), Some(12));
        assert_eq!(optparse_int("1_000"), Some(1000));
        assert_eq!(optparse_int("0x_1f"), Some(31));
        assert_eq!(optparse_int("1__0"), None);
        assert_eq!(optparse_int("10_"), None);
        assert_eq!(optparse_int("_10"), None);
        assert_eq!(optparse_int(""), None);
        assert_eq!(optparse_int("x"), None);
        assert_eq!(optparse_int("1.5"), None);
        assert_eq!(optparse_int("0x"), None);
        assert_eq!(py_int("-5", 10), Some(-5));
        assert_eq!(py_int("0x10", 10), None);
    }

    #[test]
    fn errors_read_like_optparse() {
        assert_eq!(
            p(&["-s", "x"]),
            Err(Parse::Usage("option -s: invalid integer value: 'x'".into()))
        );
        assert_eq!(
            p(&["--seed=it's"]),
            Err(Parse::Usage(
                "option --seed: invalid integer value: \"it's\"".into()
            ))
        );
        assert_eq!(
            p(&["--se", "1.5"]),
            Err(Parse::Usage(
                "option --seed: invalid integer value: '1.5'".into()
            ))
        );
        assert_eq!(p(&["-x"]), Err(Parse::Usage("no such option: -x".into())));
        assert_eq!(
            p(&["--bogus"]),
            Err(Parse::Usage("no such option: --bogus".into()))
        );
        assert_eq!(
            p(&["--s", "1"]),
            Err(Parse::Usage(
                "ambiguous option: --s (--seed, --size, --svg?)".into()
            ))
        );
        assert_eq!(
            p(&["-s"]),
            Err(Parse::Usage("-s option requires 1 argument".into()))
        );
        assert_eq!(
            p(&["--coalesce=1"]),
            Err(Parse::Usage(
                "--coalesce option does not take a value".into()
            ))
        );
        assert!(matches!(p(&["-ch"]), Err(Parse::Help(_))));
        assert!(matches!(p(&["--hel"]), Err(Parse::Help(_))));
        assert_eq!(
            p(&["--he"]),
            Err(Parse::Usage(
                "ambiguous option: --he (--headerSize, --help?)".into()
            ))
        );
    }
}
