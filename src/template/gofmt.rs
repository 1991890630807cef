//! Go's `fmt` as templates use it: `%v` printing, `print`, `println`, `%q` quoting and Go's
//! float formats. `printf` is in `printf.rs`.

use std::fmt::Write as _;

use super::value::{Kind, Value};

/// The digits and decimal exponent of the shortest representation of a finite float.
pub(crate) struct Decimal {
    pub negative: bool,
    pub digits: String,
    /// Position of the decimal point relative to the start of `digits` (Go's `dp`).
    pub point: i32,
}

pub(crate) fn shortest(f: f64) -> Decimal {
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

pub(crate) fn fixed(d: &Decimal) -> String {
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

pub(crate) fn exponential(d: &Decimal, min_exp_digits: usize) -> String {
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

pub(crate) fn is_print(c: char) -> bool {
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
