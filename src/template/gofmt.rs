//! Go's `fmt` as templates use it: `%v` printing, `print`, `printf`, `println` and `%q` quoting.

use std::fmt::Write as _;

use super::budget::{Budget, Exceeded};
use super::value::{Kind, Value};

/// The digits and decimal exponent of the shortest representation of a finite float.
struct Decimal {
    negative: bool,
    digits: String,
    /// Position of the decimal point relative to the start of `digits` (Go's `dp`).
    point: i32,
}

fn shortest(f: f64) -> Decimal {
    let sci = format!("{:e}", f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    Decimal {
        negative,
        digits,
        point: exp + 1,
    }
}

fn fixed(d: &Decimal) -> String {
    let mut s = String::new();
    if d.negative {
        s.push('-');
    }
    let nd = d.digits.len() as i32;
    if d.point <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-d.point) as usize));
        s.push_str(&d.digits);
    } else if d.point >= nd {
        s.push_str(&d.digits);
        s.extend(std::iter::repeat_n('0', (d.point - nd) as usize));
    } else {
        s.push_str(&d.digits[..d.point as usize]);
        s.push('.');
        s.push_str(&d.digits[d.point as usize..]);
    }
    s
}

fn exponential(d: &Decimal, min_exp_digits: usize) -> String {
    let mut s = String::new();
    if d.negative {
        s.push('-');
    }
    s.push_str(&d.digits[..1]);
    if d.digits.len() > 1 {
        s.push('.');
        s.push_str(&d.digits[1..]);
    }
    let exp = d.point - 1;
    let sign = if exp < 0 { '-' } else { '+' };
    let _ = write!(s, "e{sign}{:0width$}", exp.abs(), width = min_exp_digits);
    s
}

/// `strconv.FormatFloat(f, 'g', -1, 64)`, which is what `%v` prints: `8080`, `1.5`, `1e+06`.
pub(crate) fn float_g(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let d = shortest(f);
    let exp = d.point - 1;
    if !(-4..6).contains(&exp) {
        exponential(&d, 2)
    } else {
        fixed(&d)
    }
}

/// A float as Go's `encoding/json` writes it: fixed notation unless tiny or huge.
pub(crate) fn float_json(f: f64) -> String {
    let abs = f.abs();
    if f == 0.0 {
        return "0".into();
    }
    let d = shortest(f);
    if !(1e-6..1e21).contains(&abs) {
        exponential(&d, 1)
    } else {
        fixed(&d)
    }
}

/// A number as `%v` prints it.
pub(crate) fn number(n: &serde_json::Number) -> String {
    if n.is_f64() {
        float_g(n.as_f64().unwrap_or(0.0))
    } else {
        n.to_string()
    }
}

/// Appends `v` as `%v` prints it (nil is `<nil>`).
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => out.extend_from_slice(s.as_bytes()),
        Value::Bytes(b) => out.extend_from_slice(b),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(number(n).as_bytes()),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Map(map) => {
            out.extend_from_slice(b"map[");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Null => out.extend_from_slice(b"<nil>"),
    }
}

/// `fmt.Sprint`: a space between operands when neither is a string.
pub(crate) fn sprint(args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev_string = false;
    for (i, arg) in args.iter().enumerate() {
        let is_string = arg.kind() == Kind::String;
        if i > 0 && !is_string && !prev_string {
            out.push(b' ');
        }
        write_value(&mut out, arg);
        prev_string = is_string;
    }
    out
}

/// `fmt.Sprintln`: spaces between all operands and a final newline.
pub(crate) fn sprintln(args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_value(&mut out, arg);
    }
    out.push(b'\n');
    out
}

fn is_print(c: char) -> bool {
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// `strconv.Quote`: a double-quoted Go string literal.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\x07' => s.push_str("\\a"),
                '\x08' => s.push_str("\\b"),
                '\x0c' => s.push_str("\\f"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                '\x0b' => s.push_str("\\v"),
                c if is_print(c) => s.push(c),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(s, "\\x{:02x}", c as u32);
                }
                c if (c as u32) < 0x10000 => {
                    let _ = write!(s, "\\u{:04x}", c as u32);
                }
                c => {
                    let _ = write!(s, "\\U{:08x}", c as u32);
                }
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s.push('"');
    s
}

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

impl Spec {
    fn pad(&self, body: &[u8], numeric: bool, out: &mut Vec<u8>) {
        let len = String::from_utf8_lossy(body).chars().count();
        let width = self.width.unwrap_or(0);
        if len >= width {
            out.extend_from_slice(body);
            return;
        }
        let fill = width - len;
        if self.minus {
            out.extend_from_slice(body);
            out.extend(std::iter::repeat_n(b' ', fill));
        } else if self.zero && numeric {
            let sign = usize::from(matches!(body.first(), Some(b'-' | b'+' | b' ')));
            out.extend_from_slice(&body[..sign]);
            out.extend(std::iter::repeat_n(b'0', fill));
            out.extend_from_slice(&body[sign..]);
        } else {
            out.extend(std::iter::repeat_n(b' ', fill));
            out.extend_from_slice(body);
        }
    }

    fn sign(&self, s: String) -> String {
        if s.starts_with('-') {
            s
        } else if self.plus {
            format!("+{s}")
        } else if self.space {
            format!(" {s}")
        } else {
            s
        }
    }
}

fn bad_verb(verb: char, arg: &Value, out: &mut Vec<u8>) {
    let _ = write!(Sink(out), "%!{verb}(");
    if *arg == Value::Null {
        out.extend_from_slice(b"<nil>");
    } else {
        out.extend_from_slice(arg.type_name().as_bytes());
        out.push(b'=');
        write_value(out, arg);
    }
    out.push(b')');
}

/// Lets `write!` append to a byte buffer.
struct Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn format_one(verb: char, spec: &Spec, arg: &Value, out: &mut Vec<u8>) {
    let float = match arg {
        Value::Number(n) if n.is_f64() => n.as_f64(),
        _ => None,
    };
    let int = match arg {
        Value::Number(n) if !n.is_f64() => {
            n.as_i64().map(i128::from).or(n.as_u64().map(i128::from))
        }
        _ => None,
    };
    let body: Vec<u8> = match (verb, arg) {
        ('v', _) | ('s', Value::List(_) | Value::Map(_)) => {
            let mut b = Vec::new();
            write_value(&mut b, arg);
            if let (Some(f), true) = (float, spec.plus) {
                b = spec.sign(float_g(f)).into_bytes();
            }
            b
        }
        ('s', Value::String(_) | Value::Bytes(_)) => {
            let bytes = arg.as_bytes().unwrap_or_default();
            match spec.precision {
                Some(p) => String::from_utf8_lossy(bytes)
                    .chars()
                    .take(p)
                    .collect::<String>()
                    .into_bytes(),
                None => bytes.to_vec(),
            }
        }
        ('q', Value::String(_) | Value::Bytes(_)) => {
            quote(arg.as_bytes().unwrap_or_default()).into_bytes()
        }
        ('x' | 'X', Value::String(_) | Value::Bytes(_)) => {
            let mut s = String::new();
            for b in arg.as_bytes().unwrap_or_default() {
                let _ = write!(s, "{b:02x}");
            }
            if verb == 'X' { s.to_uppercase() } else { s }.into_bytes()
        }
        ('t', Value::Bool(b)) => b.to_string().into_bytes(),
        _ if int.is_some() => {
            let i = int.unwrap_or_default();
            let s = match verb {
                'd' => i.to_string(),
                'x' => format!("{}{:x}", if i < 0 { "-" } else { "" }, i.abs()),
                'X' => format!("{}{:X}", if i < 0 { "-" } else { "" }, i.abs()),
                'o' => format!("{}{:o}", if i < 0 { "-" } else { "" }, i.abs()),
                'b' => format!("{}{:b}", if i < 0 { "-" } else { "" }, i.abs()),
                'c' => u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}')
                    .to_string(),
                'q' => {
                    let c = u32::try_from(i)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('\u{fffd}');
                    let q = quote(c.to_string().as_bytes());
                    format!("'{}'", &q[1..q.len() - 1].replace("\\\"", "\""))
                }
                _ => return bad_verb(verb, arg, out),
            };
            spec.sign(s).into_bytes()
        }
        _ if float.is_some() => {
            let f = float.unwrap_or_default();
            let s = match (verb, spec.precision) {
                ('f' | 'F', p) => format!("{:.*}", p.unwrap_or(6), f),
                ('e' | 'E', p) => {
                    let s = format!("{:.*e}", p.unwrap_or(6), f);
                    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                    let e: i32 = e.parse().unwrap_or(0);
                    let s = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
                    if verb == 'E' { s.to_uppercase() } else { s }
                }
                ('g' | 'G', _) => float_g(f),
                _ => return bad_verb(verb, arg, out),
            };
            spec.sign(s).into_bytes()
        }
        _ => return bad_verb(verb, arg, out),
    };
    let numeric = matches!(arg, Value::Number(_));
    spec.pad(&body, numeric, out);
}

/// `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %x %X %o %b %c %t %f %e %g %%`,
/// with flags `-+ 0`, width and precision. Width and precision are checked against the
/// budget before padding (`%0999999999d` is a gigabyte of zeros); whatever else a verb
/// writes is at most a copy of its argument.
pub(crate) fn sprintf(
    format: &[u8],
    args: &[Value],
    budget: &mut Budget,
) -> Result<Vec<u8>, Exceeded> {
    let mut out = Vec::new();
    let mut next_arg = 0;
    let mut i = 0;
    while i < format.len() {
        let b = format[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec {
            minus: false,
            plus: false,
            zero: false,
            space: false,
            width: None,
            precision: None,
        };
        while let Some(&f) = format.get(i) {
            match f {
                b'-' => spec.minus = true,
                b'+' => spec.plus = true,
                b'0' => spec.zero = true,
                b' ' => spec.space = true,
                b'#' => {}
                _ => break,
            }
            i += 1;
        }
        let read_number = |i: &mut usize, next_arg: &mut usize| -> Option<usize> {
            if format.get(*i) == Some(&b'*') {
                *i += 1;
                let n = args.get(*next_arg).and_then(Value::as_int);
                *next_arg += 1;
                return n.and_then(|n| usize::try_from(n).ok());
            }
            let start = *i;
            while format.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            std::str::from_utf8(&format[start..*i]).ok()?.parse().ok()
        };
        spec.width = read_number(&mut i, &mut next_arg);
        if format.get(i) == Some(&b'.') {
            i += 1;
            spec.precision = Some(read_number(&mut i, &mut next_arg).unwrap_or(0));
        }
        let (verb, verb_len) = match format[i..].utf8_chunks().next() {
            None => {
                out.extend_from_slice(b"%!(NOVERB)");
                break;
            }
            Some(chunk) => match chunk.valid().chars().next() {
                Some(c) => (c, c.len_utf8()),
                None => ('\u{fffd}', 1),
            },
        };
        i += verb_len;
        if verb == '%' {
            out.push(b'%');
            continue;
        }
        let pad = spec.width.unwrap_or(0).max(spec.precision.unwrap_or(0));
        budget.check(out.len().saturating_add(pad))?;
        match args.get(next_arg) {
            Some(arg) => format_one(verb, &spec, arg, &mut out),
            None => {
                let _ = write!(Sink(&mut out), "%!{verb}(MISSING)");
            }
        }
        next_arg += 1;
    }
    if next_arg < args.len() {
        out.extend_from_slice(b"%!(EXTRA ");
        for (n, arg) in args[next_arg..].iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(b", ");
            }
            if *arg == Value::Null {
                out.extend_from_slice(b"<nil>");
            } else {
                out.extend_from_slice(arg.type_name().as_bytes());
                out.push(b'=');
                write_value(&mut out, arg);
            }
        }
        out.push(b')');
    }
    budget.string(out.len())?;
    Ok(out)
}
