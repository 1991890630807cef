//! Go's literal syntax: number literals typed as Go types them, and escapes in quoted strings.

/// Types a number literal as Go does for an `interface{}` argument: `int` unless it has a
/// fraction or exponent, then `float64`.
pub(crate) fn number(text: &str) -> std::result::Result<serde_json::Number, String> {
    let clean = text.replace('_', "");
    let (negative, unsigned) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let lower = unsigned.to_ascii_lowercase();
    let radix_digits = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find_map(|(prefix, radix)| lower.strip_prefix(prefix).map(|d| (radix, d)));
    let bad = || "bad number syntax".to_owned();
    let (radix, digits) = match radix_digits {
        Some(found) => found,
        None if lower.contains(['.', 'e']) => {
            let f: f64 = clean.parse().map_err(|_| bad())?;
            return serde_json::Number::from_f64(f).ok_or_else(bad);
        }
        // Go reads a leading 0 as octal.
        None if lower.len() > 1 && lower.starts_with('0') => (8, &lower[1..]),
        None => (10, lower.as_str()),
    };
    if digits.contains(['.', 'p']) {
        return Err("unsupported number literal".into());
    }
    let magnitude = i128::from_str_radix(digits, radix).map_err(|_| bad())?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value)
        .map(serde_json::Number::from)
        .map_err(|_| "number literal overflows int".into())
}

/// Resolves Go escape sequences in the body of a quoted string.
pub(crate) fn unquote(body: &str) -> Result<String, String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    let bad = || "invalid syntax in quoted string".to_owned();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or_else(bad)?;
        let mut hex = |n: usize, radix: u32| -> Result<u32, String> {
            let digits: String = chars.by_ref().take(n).collect();
            if digits.len() != n {
                return Err(bad());
            }
            u32::from_str_radix(&digits, radix).map_err(|_| bad())
        };
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' | '"' | '\'' => out.push(e),
            'x' => out.push(char::from_u32(hex(2, 16)?).ok_or_else(bad)?),
            'u' => out.push(char::from_u32(hex(4, 16)?).ok_or_else(bad)?),
            'U' => out.push(char::from_u32(hex(8, 16)?).ok_or_else(bad)?),
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let code = u32::from_str_radix(&format!("{e}{rest}"), 8).map_err(|_| bad())?;
                out.push(char::from_u32(code).ok_or_else(bad)?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}
