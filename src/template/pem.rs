//! ESO's `filterPEM`.

use base64::Engine as _;

use super::functions::{FnResult, string_arg};
use super::value::Value;

/// One PEM block: its type and the text from BEGIN to the end of the END line.
struct PemBlock {
    kind: String,
    der: Vec<u8>,
    end: usize,
}

/// Go's `pem.Decode`, minus headers: the first well-formed block in `input`.
fn next_pem(input: &str) -> Option<PemBlock> {
    let mut from = 0;
    while let Some(rel) = input[from..].find("-----BEGIN ") {
        let start = from + rel;
        from = start + 11;
        let Some(type_end) = input[from..].find("-----") else {
            break;
        };
        let kind = &input[from..from + type_end];
        let body_start = from + type_end + 5;
        let end_marker = format!("-----END {kind}-----");
        let Some(body_len) = input[body_start..].find(&end_marker) else {
            continue;
        };
        let body: String = input[body_start..body_start + body_len]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body) else {
            continue;
        };
        let mut end = body_start + body_len + end_marker.len();
        if input[end..].starts_with("\r\n") {
            end += 2;
        } else if input[end..].starts_with('\n') {
            end += 1;
        }
        return Some(PemBlock {
            kind: kind.to_owned(),
            der,
            end,
        });
    }
    None
}

/// ESO's `filterPEM`: the blocks of one type (case-insensitive), re-encoded as Go's `pem.Encode` does.
pub(crate) fn filter_pem(args: &[Value]) -> FnResult {
    let kind = string_arg(args, 0)?;
    let input = string_arg(args, 1)?;
    let mut rest = input
        .find("-----BEGIN")
        .map_or(input.as_str(), |i| &input[i..]);
    let mut out = String::new();
    while let Some(block) = next_pem(rest) {
        rest = &rest[block.end..];
        if !block.kind.eq_ignore_ascii_case(&kind) {
            continue;
        }
        out.push_str(&format!("-----BEGIN {}-----\n", block.kind));
        let encoded = base64::engine::general_purpose::STANDARD.encode(&block.der);
        for line in encoded.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(&format!("-----END {}-----\n", block.kind));
    }
    if out.is_empty() && !rest.is_empty() {
        return Err("error filtering pem: found junk".into());
    }
    Ok(Value::String(out))
}
