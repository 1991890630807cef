//! Splits template text into tokens, following Go's `text/template/parse` lexer.

use super::budget::{Exceeded, Limits, too_deep};
use super::literals::unquote;

/// What a token is. Strings carry their unquoted value; identifiers, fields and variables their name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Text(String),
    LeftDelim,
    RightDelim,
    Space,
    Identifier(String),
    Keyword(&'static str),
    /// `.name` (without the dot).
    Field(String),
    Dot,
    /// `$` or `$name` (with the dollar).
    Variable(String),
    Bool(bool),
    Nil,
    /// The literal's source text, or for a character constant its code point.
    Number(String),
    Char(char),
    String(String),
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    Comma,
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// A lexing error: byte position and message.
pub(crate) type LexError = (usize, String);

const KEYWORDS: &[&str] = &[
    "block", "break", "continue", "define", "else", "end", "if", "range", "template", "with",
];

pub(crate) fn lex(text: &str) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer {
        src: text,
        pos: 0,
        tokens: Vec::new(),
        paren_depth: 0,
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    paren_depth: usize,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn emit(&mut self, tok: Tok, pos: usize) {
        self.tokens.push(Token { tok, pos });
    }

    fn run(&mut self) -> Result<(), LexError> {
        let mut trim_next_text = false;
        loop {
            let start = self.pos;
            let next = self.rest().find("{{").map_or(self.src.len(), |i| start + i);
            let mut text = &self.src[start..next];
            if trim_next_text {
                text = text.trim_start_matches(is_space);
            }
            let after = &self.src[next..];
            let left_trim =
                after.len() >= 4 && after[2..].starts_with('-') && after[3..].starts_with(is_space);
            if left_trim {
                text = text.trim_end_matches(is_space);
            }
            if !text.is_empty() {
                self.emit(Tok::Text(text.to_owned()), start);
            }
            if next == self.src.len() {
                self.emit(Tok::Eof, next);
                return Ok(());
            }
            self.pos = next + if left_trim { 4 } else { 2 };
            if self.rest().starts_with("/*") {
                trim_next_text = self.comment(next)?;
                continue;
            }
            self.emit(Tok::LeftDelim, next);
            trim_next_text = self.inside_action(next)?;
        }
    }

    /// Skips `/* ... */` and its closing delimiter; returns whether that delimiter trims.
    fn comment(&mut self, open: usize) -> Result<bool, LexError> {
        let Some(end) = self.rest().find("*/") else {
            return Err((open, "unclosed comment".into()));
        };
        self.pos += end + 2;
        if self.rest().starts_with("}}") {
            self.pos += 2;
            Ok(false)
        } else if self.rest().len() >= 4
            && self.rest().starts_with(is_space)
            && self.rest()[1..].starts_with("-}}")
        {
            self.pos += 4;
            Ok(true)
        } else {
            Err((open, "comment ends before closing delimiter".into()))
        }
    }

    /// Whether the input is at `}}` or ` -}}`: returns the delimiter's length and whether it trims.
    fn at_right_delim(&self) -> Option<(usize, bool)> {
        let rest = self.rest();
        if rest.starts_with("}}") {
            return Some((2, false));
        }
        let mut chars = rest.chars();
        if chars.next().is_some_and(is_space) && rest[1..].starts_with("-}}") {
            return Some((4, true));
        }
        None
    }

    /// Lexes one action up to and including its closing delimiter; returns whether it trims.
    fn inside_action(&mut self, open: usize) -> Result<bool, LexError> {
        loop {
            if let Some((len, trim)) = self.at_right_delim() {
                if self.paren_depth > 0 {
                    return Err((self.pos, "unclosed left paren".into()));
                }
                self.emit(Tok::RightDelim, self.pos);
                self.pos += len;
                return Ok(trim);
            }
            let start = self.pos;
            let Some(c) = self.peek() else {
                return Err((open, "unclosed action".into()));
            };
            match c {
                c if is_space(c) => {
                    while self.peek().is_some_and(is_space)
                        && self.at_right_delim().is_none_or(|(_, trim)| !trim)
                    {
                        self.pos += 1;
                    }
                    self.emit(Tok::Space, start);
                }
                '=' => self.single(Tok::Assign),
                ':' => {
                    if !self.rest().starts_with(":=") {
                        return Err((start, "expected :=".into()));
                    }
                    self.pos += 2;
                    self.emit(Tok::Declare, start);
                }
                '|' => self.single(Tok::Pipe),
                ',' => self.single(Tok::Comma),
                '(' => {
                    self.paren_depth += 1;
                    self.single(Tok::LeftParen);
                }
                ')' => {
                    if self.paren_depth == 0 {
                        return Err((start, "unexpected right paren".into()));
                    }
                    self.paren_depth -= 1;
                    self.single(Tok::RightParen);
                }
                '"' => self.quoted()?,
                '`' => self.raw_quoted()?,
                '\'' => self.char_constant()?,
                '$' => self.field_or_variable(true)?,
                '.' if self.rest()[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                    self.number()?
                }
                '.' => self.field_or_variable(false)?,
                '+' | '-' | '0'..='9' => self.number()?,
                c if is_alnum(c) => self.identifier()?,
                c => return Err((start, format!("unrecognized character in action: {c:?}"))),
            }
        }
    }

    fn single(&mut self, tok: Tok) {
        let start = self.pos;
        self.pos += 1;
        self.emit(tok, start);
    }

    fn take_alnum(&mut self) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(is_alnum) {
            self.pos += self.peek().map_or(1, char::len_utf8);
        }
        &self.src[start..self.pos]
    }

    /// Go requires a word to be followed by a space, a delimiter or punctuation.
    fn check_terminator(&self) -> Result<(), LexError> {
        match self.peek() {
            None => Ok(()),
            Some(c) if is_space(c) || matches!(c, '.' | ',' | '|' | ':' | ')' | '(') => Ok(()),
            Some(_) if self.at_right_delim().is_some() => Ok(()),
            Some(c) => Err((self.pos, format!("bad character {c:?}"))),
        }
    }

    fn identifier(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        let word = self.take_alnum().to_owned();
        self.check_terminator()?;
        let tok = match word.as_str() {
            "true" => Tok::Bool(true),
            "false" => Tok::Bool(false),
            "nil" => Tok::Nil,
            w => match KEYWORDS.iter().find(|k| **k == w) {
                Some(k) => Tok::Keyword(k),
                None => Tok::Identifier(word),
            },
        };
        self.emit(tok, start);
        Ok(())
    }

    fn field_or_variable(&mut self, variable: bool) -> Result<(), LexError> {
        let start = self.pos;
        self.pos += 1;
        let name = self.take_alnum().to_owned();
        if name.is_empty() && !variable {
            self.emit(Tok::Dot, start);
            return Ok(());
        }
        self.check_terminator()?;
        let tok = if variable {
            Tok::Variable(format!("${name}"))
        } else {
            Tok::Field(name)
        };
        self.emit(tok, start);
        Ok(())
    }

    fn number(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut i = self.pos;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let mut digits: &[u8] = b"0123456789_";
        let mut exponent: &[u8] = b"eE";
        if bytes.get(i) == Some(&b'0')
            && matches!(
                bytes.get(i + 1),
                Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
            )
        {
            i += 2;
            match bytes[i - 1] {
                b'x' | b'X' => {
                    digits = b"0123456789abcdefABCDEF_";
                    exponent = b"pP";
                }
                b'o' | b'O' => digits = b"01234567_",
                _ => digits = b"01_",
            }
        }
        let scan = |i: &mut usize, set: &[u8]| {
            while bytes.get(*i).is_some_and(|b| set.contains(b)) {
                *i += 1;
            }
        };
        scan(&mut i, digits);
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            scan(&mut i, digits);
        }
        if bytes.get(i).is_some_and(|b| exponent.contains(b)) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            scan(&mut i, b"0123456789_");
        }
        self.pos = i;
        let text = &self.src[start..i];
        if self.peek().is_some_and(is_alnum) || !text.bytes().any(|b| b.is_ascii_digit()) {
            return Err((start, "bad number syntax".into()));
        }
        self.emit(Tok::Number(text.to_owned()), start);
        Ok(())
    }

    fn quoted(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        let mut i = self.pos + 1;
        let bytes = self.src.as_bytes();
        loop {
            match bytes.get(i) {
                None | Some(b'\n') => return Err((start, "unterminated quoted string".into())),
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let body = &self.src[start + 1..i];
        let value = unquote(body).map_err(|msg| (start, msg))?;
        self.pos = i + 1;
        self.emit(Tok::String(value), start);
        Ok(())
    }

    fn raw_quoted(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        let Some(len) = self.src[start + 1..].find('`') else {
            return Err((start, "unterminated raw quoted string".into()));
        };
        // Go drops carriage returns from raw strings.
        let value = self.src[start + 1..start + 1 + len].replace('\r', "");
        self.pos = start + len + 2;
        self.emit(Tok::String(value), start);
        Ok(())
    }

    fn char_constant(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        let mut i = start + 1;
        let bytes = self.src.as_bytes();
        loop {
            match bytes.get(i) {
                None | Some(b'\n') => {
                    return Err((start, "unterminated character constant".into()));
                }
                Some(b'\\') => i += 2,
                Some(b'\'') => break,
                Some(_) => i += 1,
            }
        }
        let value = unquote(&self.src[start + 1..i]).map_err(|msg| (start, msg))?;
        let mut chars = value.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return Err((start, "malformed character constant".into()));
        };
        self.pos = i + 1;
        self.emit(Tok::Char(c), start);
        Ok(())
    }
}

/// How parse errors name a token: its kind, and names as written, never literal text.
pub(crate) fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Text(_) => "text".into(),
        Tok::LeftDelim => "\"{{\"".into(),
        Tok::RightDelim => "\"}}\"".into(),
        Tok::Space => "space".into(),
        Tok::Identifier(n) => format!("identifier {n:?}"),
        Tok::Keyword(k) => format!("keyword {k:?}"),
        Tok::Field(n) => format!("field \".{n}\""),
        Tok::Dot => "\".\"".into(),
        Tok::Variable(n) => format!("variable {n:?}"),
        Tok::Bool(b) => format!("{b}"),
        Tok::Nil => "nil".into(),
        Tok::Number(_) => "number".into(),
        Tok::Char(_) => "character constant".into(),
        Tok::String(_) => "quoted string".into(),
        Tok::Pipe => "\"|\"".into(),
        Tok::LeftParen => "\"(\"".into(),
        Tok::RightParen => "\")\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Eof => "end of template".into(),
    }
}

/// Refuses, before the recursive parser sees them, tokens nested deeper than the limit:
/// parentheses, control structures and `{{else if}}` chains (each a level in the parser).
pub(crate) fn check_depth(toks: &[Token], limits: &Limits) -> Result<(), (usize, Exceeded)> {
    // Levels opened by each structure still open: 1, plus one per `else if`/`else with`.
    let mut open: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut after_else = false;
    for t in toks {
        match t.tok {
            Tok::LeftParen => depth += 1,
            Tok::RightParen => depth = depth.saturating_sub(1),
            Tok::Keyword("if" | "with") if after_else => {
                if let Some(levels) = open.last_mut() {
                    *levels += 1;
                }
                depth += 1;
            }
            Tok::Keyword("if" | "with" | "range" | "define" | "block") => {
                open.push(1);
                depth += 1;
            }
            Tok::Keyword("end") => depth = depth.saturating_sub(open.pop().unwrap_or(0)),
            _ => {}
        }
        if t.tok != Tok::Space {
            after_else = t.tok == Tok::Keyword("else");
        }
        too_deep(limits, depth).map_err(|e| (t.pos, e))?;
    }
    Ok(())
}
