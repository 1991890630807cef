//! Go's `fmt.Sprintf` for the verbs templates use, with flags, width and precision.

use std::fmt::Write as _;

use super::budget::{Budget, Exceeded};
use super::gofmt::{Decimal, exponential, fixed, float_g, quote, write_value};
use super::value::Value;

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
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
        ('T', _) => arg.type_name().as_bytes().to_vec(),
        ('v', _) if spec.sharp => {
            let mut b = Vec::new();
            write_go_syntax(&mut b, arg);
            b
        }
        // `%.3v` is `%.3g` for floats and `%.3s` for strings.
        ('v', Value::Number(_)) if float.is_some() && spec.precision.is_some() => {
            float_g_precision(float.unwrap_or_default(), spec.precision.unwrap_or(0)).into_bytes()
        }
        ('v', Value::String(_) | Value::Bytes(_)) if spec.precision.is_some() => {
            return format_one('s', spec, arg, out);
        }
        // `%+v` is not `%+d`: Go turns the plus flag into "field names" for structs.
        ('v', _) | ('s', Value::List(_) | Value::Map(_)) => {
            let mut b = Vec::new();
            write_value(&mut b, arg);
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
            let bytes = arg.as_bytes().unwrap_or_default();
            match std::str::from_utf8(bytes) {
                Ok(s) if spec.sharp && can_backquote(s) => format!("`{s}`"),
                _ if spec.plus => quote_ascii(&quote(bytes)),
                _ => quote(bytes),
            }
            .into_bytes()
        }
        ('x' | 'X', Value::String(_) | Value::Bytes(_)) => {
            // `% x` separates the bytes; `%#x` prefixes 0x once, or to each byte with `% #x`.
            let mut s = String::new();
            for (i, b) in arg.as_bytes().unwrap_or_default().iter().enumerate() {
                if spec.space && i > 0 {
                    s.push(' ');
                }
                if spec.sharp && (spec.space || i == 0) {
                    s.push_str("0x");
                }
                let _ = write!(s, "{b:02x}");
            }
            if verb == 'X' { s.to_uppercase() } else { s }.into_bytes()
        }
        ('t', Value::Bool(b)) => b.to_string().into_bytes(),
        _ if int.is_some() => {
            let i = int.unwrap_or_default();
            let minus = if i < 0 { "-" } else { "" };
            let prefix = |p: &'static str| if spec.sharp { p } else { "" };
            let rune = || {
                u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}')
            };
            let s = match verb {
                'd' => i.to_string(),
                'x' => format!("{minus}{}{:x}", prefix("0x"), i.abs()),
                'X' => format!("{minus}{}{:X}", prefix("0X"), i.abs()),
                'o' => format!("{minus}{}{:o}", prefix("0"), i.abs()),
                'b' => format!("{minus}{}{:b}", prefix("0b"), i.abs()),
                'c' => rune().to_string(),
                'q' => {
                    let q = quote(rune().to_string().as_bytes());
                    let q = if spec.plus { quote_ascii(&q) } else { q };
                    format!("'{}'", &q[1..q.len() - 1].replace("\\\"", "\""))
                }
                'U' => {
                    let u = format!("U+{:04X}", i);
                    match rune() {
                        c if spec.sharp && super::gofmt::is_print(c) => format!("{u} '{c}'"),
                        _ => u,
                    }
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
                ('g', None) => float_g(f),
                ('g', Some(p)) => float_g_precision(f, p),
                ('G', p) => p
                    .map_or_else(|| float_g(f), |p| float_g_precision(f, p))
                    .to_uppercase(),
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
            sharp: false,
            width: None,
            precision: None,
        };
        while let Some(&f) = format.get(i) {
            match f {
                b'-' => spec.minus = true,
                b'+' => spec.plus = true,
                b'0' => spec.zero = true,
                b' ' => spec.space = true,
                b'#' => spec.sharp = true,
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

/// `strconv.FormatFloat(f, 'g', precision, 64)`: `precision` significant digits, trailing
/// zeros dropped, exponent form when the exponent is below -4 or not below the precision.
fn float_g_precision(f: f64, precision: usize) -> String {
    if !f.is_finite() {
        return float_g(f);
    }
    let precision = precision.max(1);
    let sci = format!("{:.*e}", precision - 1, f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let d = Decimal {
        negative: mantissa.starts_with('-'),
        point: exp.parse::<i32>().unwrap_or(0) + 1,
        digits,
    };
    let nd = d.digits.len() as i32;
    let mut eprec = precision as i32;
    if eprec > nd && nd >= d.point {
        eprec = nd;
    }
    let exp = d.point - 1;
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    if exp < -4 || exp >= eprec {
        exponential(&d, 2)
    } else {
        fixed(&d)
    }
}

/// `strconv.QuoteToASCII` from a quoted string: every non-ASCII character escaped.
fn quote_ascii(quoted: &str) -> String {
    let mut s = String::with_capacity(quoted.len());
    for c in quoted.chars() {
        match c as u32 {
            0..0x80 => s.push(c),
            u @ 0x80..0x10000 => {
                let _ = write!(s, "\\u{u:04x}");
            }
            u => {
                let _ = write!(s, "\\U{u:08x}");
            }
        }
    }
    s
}

/// `strconv.CanBackquote`: `%#q` uses a raw string when the text fits in one.
fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{feff}' && (c == '\t' || !c.is_control()))
}

/// `%#v`: the value as Go source, as fmt prints an `interface{}` holding it.
fn write_go_syntax(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(_) | Value::Bytes(_) => {
            out.extend_from_slice(quote(v.as_bytes().unwrap_or_default()).as_bytes());
        }
        Value::Null => out.extend_from_slice(b"<nil>"),
        Value::List(items) => {
            out.extend_from_slice(b"[]interface {}{");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_go_element(out, item);
            }
            out.push(b'}');
        }
        Value::Map(map) => {
            out.extend_from_slice(b"map[string]interface {}{");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(quote(k.as_bytes()).as_bytes());
                out.push(b':');
                write_go_element(out, item);
            }
            out.push(b'}');
        }
        Value::Bool(_) | Value::Number(_) => write_value(out, v),
    }
}

/// An element of a list or map: a nil there is a typed `interface {}(nil)`.
fn write_go_element(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"interface {}(nil)"),
        v => write_go_syntax(out, v),
    }
}
