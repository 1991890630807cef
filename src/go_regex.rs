//! Go (RE2) regular expressions, as ESO compiles `find.name.regexp` and `rewrite.regexp.source`,
//! on Rust's `regex` crate. The syntaxes are nearly the same; the one difference that changes
//! results is that Go's Perl classes (`\d`, `\w`, `\s`) and word boundaries (`\b`) are ASCII-only
//! while Rust's are Unicode-aware, so they are rewritten to their ASCII meaning. Go's `\Q…\E`
//! literal text, which Rust lacks, is escaped. Replacement templates (`$1`, `${1}`, `$name`,
//! `$$`) follow the same rules in both: `$1x` names a group `1x`, which expands to nothing.

use regex::Regex;

/// Compiles a Go regular expression.
pub fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&translate(pattern))
}

fn translate(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    // Inside `[...]`, and whether the next `]` would be literal (first in the class).
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                if next == 'Q' {
                    let mut literal = String::new();
                    while let Some(l) = chars.next() {
                        if l == '\\' && chars.peek() == Some(&'E') {
                            chars.next();
                            break;
                        }
                        literal.push(l);
                    }
                    out.push_str(&regex::escape(&literal));
                } else {
                    out.push_str(&perl_class(next, in_class).unwrap_or_else(|| {
                        let mut kept = String::from('\\');
                        kept.push(next);
                        kept
                    }));
                }
                class_start = false;
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                continue;
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class such as `[:alpha:]` (ASCII in both syntaxes).
                out.push('[');
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
                class_start = false;
            }
            '[' => {
                // A literal `[` inside a class; Rust would read it as a nested class.
                out.push_str("\\[");
                class_start = false;
            }
            ']' if in_class && !class_start => {
                in_class = false;
                out.push(']');
            }
            ']' if in_class => {
                out.push_str("\\]");
                class_start = false;
            }
            c => {
                out.push(c);
                class_start = false;
            }
        }
    }
    out
}

/// The ASCII meaning of a Go Perl class or assertion, in or out of a character class.
fn perl_class(letter: char, in_class: bool) -> Option<String> {
    let (set, negated) = match letter {
        'd' => ("0-9", false),
        'D' => ("0-9", true),
        'w' => ("0-9A-Za-z_", false),
        'W' => ("0-9A-Za-z_", true),
        's' => ("\\t\\n\\f\\r ", false),
        'S' => ("\\t\\n\\f\\r ", true),
        'b' if !in_class => return Some("(?-u:\\b)".into()),
        'B' if !in_class => return Some("(?-u:\\B)".into()),
        _ => return None,
    };
    Some(match (in_class, negated) {
        (true, false) => set.to_owned(),
        (_, true) => format!("[^{set}]"),
        (false, false) => format!("[{set}]"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        let digits = compile(r"^\d+$").unwrap();
        assert!(digits.is_match("0123"));
        assert!(!digits.is_match("٣"), "Arabic-Indic digit is not \\d in Go");
        let word = compile(r"^\w+$").unwrap();
        assert!(word.is_match("a_B9"));
        assert!(!word.is_match("é"));
        assert!(compile(r"^[\w-]+$").unwrap().is_match("a-b_c"));
        assert!(!compile(r"^[\w-]+$").unwrap().is_match("a/b"));
        assert!(compile(r"^[^\d]+$").unwrap().is_match("abc"));
        assert!(compile(r"^[\D]+$").unwrap().is_match("abc"));
        assert!(!compile(r"^[\D]+$").unwrap().is_match("a1"));
        assert!(compile(r"a\sb").unwrap().is_match("a\tb"));
        assert!(!compile(r"a\sb").unwrap().is_match("a\u{a0}b"));
        assert!(compile(r"\bdb\b").unwrap().is_match("app/db"));
    }

    #[test]
    fn literals_classes_and_escapes_survive() {
        assert!(compile(r"\Qa.b\E$").unwrap().is_match("xa.b"));
        assert!(!compile(r"\Qa.b\E$").unwrap().is_match("xaxb"));
        assert!(compile(r"^[]a]+$").unwrap().is_match("]a"));
        assert!(compile(r"^[[:alpha:]]+$").unwrap().is_match("abc"));
        assert!(compile(r"^[a[]+$").unwrap().is_match("a[a"));
        assert!(compile(r"^a\.b$").unwrap().is_match("a.b"));
        assert!(compile(r"^\\d$").unwrap().is_match("\\d"));
        assert!(compile("(?i)^APP/").unwrap().is_match("app/db"));
        assert!(compile("(").is_err());
    }

    #[test]
    fn replacement_templates_expand_as_in_go() {
        let re = compile("^app/(?P<rest>.*)$").unwrap();
        assert_eq!(re.replace_all("app/db", "x-$1"), "x-db");
        assert_eq!(re.replace_all("app/db", "x-${1}y"), "x-dby");
        assert_eq!(re.replace_all("app/db", "x-${rest}"), "x-db");
        assert_eq!(re.replace_all("app/db", "$1y"), "", "$1y names group `1y`");
        assert_eq!(re.replace_all("app/db", "$$1"), "$1");
    }
}
