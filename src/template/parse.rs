//! Builds the parse tree from tokens, following Go's `text/template/parse` parser.

use std::collections::BTreeMap;

use super::ast::{Arg, ArgKind, Branch, Command, List, Node, Pipe};
use super::budget::{Exceeded, Limits};
use super::functions;
use super::lex::{Tok, Token, check_depth, describe, lex};
use super::literals::number;

/// A parsed template: the main list and the `define`d templates.
#[derive(Debug)]
pub(crate) struct Tree {
    pub root: List,
    pub defines: BTreeMap<String, List>,
}

/// A parse error: byte position and message.
pub(crate) type ParseError = (usize, String);

type Result<T> = std::result::Result<T, ParseError>;

/// Why a template does not parse.
#[derive(Debug)]
pub(crate) enum Failure {
    Syntax(usize, String),
    /// Nested deeper than the limit, at this position.
    Budget(usize, Exceeded),
}

pub(crate) fn parse(text: &str, limits: &Limits) -> std::result::Result<Tree, Failure> {
    let toks = lex(text).map_err(|(pos, message)| Failure::Syntax(pos, message))?;
    check_depth(&toks, limits).map_err(|(pos, e)| Failure::Budget(pos, e))?;
    parse_tokens(toks).map_err(|(pos, message)| Failure::Syntax(pos, message))
}

fn parse_tokens(toks: Vec<Token>) -> Result<Tree> {
    let mut parser = Parser {
        toks,
        i: 0,
        vars: vec!["$".to_owned()],
        range_depth: 0,
        control_depth: 0,
        defines: BTreeMap::new(),
    };
    let (root, end) = parser.item_list()?;
    if let Some(end) = end {
        return Err((end.pos(), format!("unexpected {}", end.describe())));
    }
    Ok(Tree {
        root,
        defines: parser.defines,
    })
}

/// What ended an item list.
enum Stop {
    End(usize),
    Else(usize),
}

impl Stop {
    fn pos(&self) -> usize {
        match self {
            Stop::End(p) | Stop::Else(p) => *p,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Stop::End(_) => "{{end}}",
            Stop::Else(_) => "{{else}}",
        }
    }
}

/// What an action turned out to be.
enum Item {
    Node(Node),
    Stop(Stop),
    Nothing,
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
    range_depth: usize,
    control_depth: usize,
    defines: BTreeMap<String, List>,
}

impl Parser {
    fn next(&mut self) -> Token {
        let t = self.toks[self.i.min(self.toks.len() - 1)].clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn peek(&self) -> &Token {
        &self.toks[self.i]
    }

    fn skip_space(&mut self) {
        while self.toks[self.i].tok == Tok::Space {
            self.i += 1;
        }
    }

    fn next_non_space(&mut self) -> Token {
        self.skip_space();
        self.next()
    }

    fn peek_non_space(&mut self) -> &Token {
        self.skip_space();
        self.peek()
    }

    fn unexpected<T>(&self, t: &Token, context: &str) -> Result<T> {
        Err((
            t.pos,
            format!("unexpected {} in {context}", describe(&t.tok)),
        ))
    }

    fn expect_right_delim(&mut self, context: &str) -> Result<()> {
        let t = self.next_non_space();
        if t.tok != Tok::RightDelim {
            return self.unexpected(&t, context);
        }
        Ok(())
    }

    /// Parses nodes until `{{end}}`, `{{else}}` or the end of the text.
    fn item_list(&mut self) -> Result<(List, Option<Stop>)> {
        let mut list = List::new();
        loop {
            let t = self.next();
            match t.tok {
                Tok::Eof => return Ok((list, None)),
                Tok::Text(s) => list.push(Node::Text(s)),
                Tok::LeftDelim => match self.action()? {
                    Item::Node(n) => list.push(n),
                    Item::Stop(stop) => return Ok((list, Some(stop))),
                    Item::Nothing => {}
                },
                _ => return self.unexpected(&t, "input"),
            }
        }
    }

    /// A list that must end with `{{end}}`.
    fn list_until_end(&mut self, open: usize, context: &str) -> Result<List> {
        match self.item_list()? {
            (list, Some(Stop::End(_))) => Ok(list),
            (_, Some(Stop::Else(p))) => Err((p, format!("unexpected {{{{else}}}} in {context}"))),
            (_, None) => Err((
                open,
                format!("unexpected EOF: {context} has no {{{{end}}}}"),
            )),
        }
    }

    fn action(&mut self) -> Result<Item> {
        let t = self.next_non_space();
        let Tok::Keyword(k) = t.tok else {
            self.i -= 1;
            let pipe = self.pipeline("command", &Tok::RightDelim)?;
            return Ok(Item::Node(Node::Action(pipe)));
        };
        match k {
            "if" | "with" | "range" => self.control(k, t.pos).map(Item::Node),
            "end" => {
                self.expect_right_delim("end")?;
                Ok(Item::Stop(Stop::End(t.pos)))
            }
            "else" => {
                // `else if` and `else with` leave the keyword for the enclosing control to read.
                if !matches!(self.peek_non_space().tok, Tok::Keyword("if" | "with")) {
                    self.expect_right_delim("else")?;
                }
                Ok(Item::Stop(Stop::Else(t.pos)))
            }
            "break" | "continue" => {
                if self.range_depth == 0 {
                    return Err((t.pos, format!("{{{{{k}}}}} outside {{{{range}}}}")));
                }
                self.expect_right_delim(k)?;
                Ok(Item::Node(if k == "break" {
                    Node::Break
                } else {
                    Node::Continue
                }))
            }
            "template" => self.template_call(t.pos).map(Item::Node),
            "define" | "block" => self.define(k, t.pos),
            _ => self.unexpected(&t, "action"),
        }
    }

    fn control(&mut self, context: &'static str, pos: usize) -> Result<Node> {
        let vars = self.vars.len();
        self.control_depth += 1;
        let pipe = self.pipeline(context, &Tok::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, stop) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let else_list = match stop {
            None => {
                return Err((
                    pos,
                    format!("unexpected EOF: {{{{{context}}}}} has no {{{{end}}}}"),
                ));
            }
            Some(Stop::End(_)) => None,
            Some(Stop::Else(else_pos)) => {
                let chained = match self.peek().tok {
                    Tok::Keyword(k @ ("if" | "with")) if k == context => Some(k),
                    Tok::Keyword(k @ ("if" | "with")) => {
                        return Err((
                            else_pos,
                            format!("unexpected {{{{else {k}}}}} in {{{{{context}}}}}"),
                        ));
                    }
                    _ => None,
                };
                match chained {
                    // `{{else if}}` is an `if` nested in the else branch, sharing its `{{end}}`.
                    Some(k) => {
                        let t = self.next();
                        Some(vec![self.control(k, t.pos)?])
                    }
                    None => Some(self.list_until_end(pos, context)?),
                }
            }
        };
        self.vars.truncate(vars);
        self.control_depth -= 1;
        let branch = Branch {
            pipe,
            list,
            else_list,
        };
        Ok(match context {
            "if" => Node::If(branch),
            "with" => Node::With(branch),
            _ => Node::Range(branch),
        })
    }

    fn template_name(&mut self, context: &str) -> Result<String> {
        let t = self.next_non_space();
        match t.tok {
            Tok::String(name) => Ok(name),
            _ => self.unexpected(&t, context),
        }
    }

    fn template_call(&mut self, pos: usize) -> Result<Node> {
        let name = self.template_name("template clause")?;
        let pipe = if self.peek_non_space().tok == Tok::RightDelim {
            self.next();
            None
        } else {
            Some(self.pipeline("template clause", &Tok::RightDelim)?)
        };
        Ok(Node::Template { pos, name, pipe })
    }

    fn define(&mut self, keyword: &str, pos: usize) -> Result<Item> {
        if keyword == "define" && self.control_depth > 0 {
            return Err((pos, "{{define}} must be at the top level".into()));
        }
        let name = self.template_name(keyword)?;
        let pipe = if keyword == "block" {
            Some(self.pipeline("block clause", &Tok::RightDelim)?)
        } else {
            self.expect_right_delim("define clause")?;
            None
        };
        // A defined template sees only its own variables.
        let outer_vars = std::mem::replace(&mut self.vars, vec!["$".to_owned()]);
        let outer_range = std::mem::take(&mut self.range_depth);
        let body = self.list_until_end(pos, keyword);
        self.vars = outer_vars;
        self.range_depth = outer_range;
        self.defines.insert(name.clone(), body?);
        Ok(match pipe {
            Some(pipe) => Item::Node(Node::Template {
                pos,
                name,
                pipe: Some(pipe),
            }),
            None => Item::Nothing,
        })
    }

    fn pipeline(&mut self, context: &str, end: &Tok) -> Result<Pipe> {
        let pos = self.peek_non_space().pos;
        let mut pipe = Pipe {
            pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        self.declarations(&mut pipe, context)?;
        loop {
            let t = self.next_non_space();
            match &t.tok {
                tok if tok == end => {
                    self.check_pipeline(&pipe, context, t.pos)?;
                    return Ok(pipe);
                }
                Tok::Bool(_)
                | Tok::Char(_)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Identifier(_)
                | Tok::Number(_)
                | Tok::Nil
                | Tok::String(_)
                | Tok::Variable(_)
                | Tok::LeftParen => {
                    self.i -= 1;
                    pipe.cmds.push(self.command()?);
                }
                _ => return self.unexpected(&t, context),
            }
        }
    }

    fn declarations(&mut self, pipe: &mut Pipe, context: &str) -> Result<()> {
        loop {
            let save = self.i;
            let t = self.peek_non_space().clone();
            let Tok::Variable(name) = t.tok else {
                return Ok(());
            };
            self.next();
            let after = self.peek_non_space().tok.clone();
            match after {
                Tok::Declare | Tok::Assign => {
                    self.next();
                    pipe.is_assign = after == Tok::Assign;
                    if pipe.is_assign && !self.vars.contains(&name) {
                        return Err((t.pos, format!("undefined variable {name:?}")));
                    }
                    pipe.decl.push(name.clone());
                    self.vars.push(name);
                    return Ok(());
                }
                Tok::Comma => {
                    self.next();
                    pipe.decl.push(name.clone());
                    self.vars.push(name);
                    if context != "range" || pipe.decl.len() >= 2 {
                        return Err((t.pos, format!("too many declarations in {context}")));
                    }
                    if !matches!(self.peek_non_space().tok, Tok::Variable(_)) {
                        return Err((t.pos, "range can only initialize variables".into()));
                    }
                }
                _ => {
                    self.i = save;
                    return Ok(());
                }
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str, pos: usize) -> Result<()> {
        if pipe.cmds.is_empty() {
            return Err((pos, format!("missing value for {context}")));
        }
        for (i, cmd) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                cmd.args[0].kind,
                ArgKind::Bool(_)
                    | ArgKind::Dot
                    | ArgKind::Nil
                    | ArgKind::Number(_)
                    | ArgKind::String(_)
            ) {
                return Err((
                    cmd.pos,
                    format!("non executable command in pipeline stage {}", i + 1),
                ));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> Result<Command> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        loop {
            self.skip_space();
            if let Some(op) = self.operand()? {
                args.push(op);
            }
            let t = self.next();
            match t.tok {
                Tok::Space => continue,
                Tok::RightDelim | Tok::RightParen => self.i -= 1,
                Tok::Pipe => {}
                _ => return self.unexpected(&t, "operand"),
            }
            break;
        }
        if args.is_empty() {
            return Err((pos, "empty command".into()));
        }
        Ok(Command { pos, args })
    }

    fn operand(&mut self) -> Result<Option<Arg>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        let mut fields = Vec::new();
        while let Tok::Field(name) = &self.peek().tok {
            fields.push(name.clone());
            self.next();
        }
        if fields.is_empty() {
            return Ok(Some(term));
        }
        let pos = term.pos;
        let kind = match term.kind {
            ArgKind::Field(mut names) => {
                names.extend(fields);
                ArgKind::Field(names)
            }
            ArgKind::Variable(name, mut names) => {
                names.extend(fields);
                ArgKind::Variable(name, names)
            }
            ArgKind::Bool(_)
            | ArgKind::String(_)
            | ArgKind::Number(_)
            | ArgKind::Nil
            | ArgKind::Dot => {
                return Err((pos, format!("unexpected . after term {}", term.label)));
            }
            _ => ArgKind::Chain(Box::new(term), fields),
        };
        Ok(Some(Arg {
            pos,
            label: label(&kind),
            kind,
        }))
    }

    fn term(&mut self) -> Result<Option<Arg>> {
        let t = self.next_non_space();
        let kind = match t.tok {
            Tok::Identifier(name) => {
                if functions::lookup(&name).is_none() {
                    return Err((t.pos, functions::unknown_message(&name)));
                }
                ArgKind::Function(name)
            }
            Tok::Dot => ArgKind::Dot,
            Tok::Nil => ArgKind::Nil,
            Tok::Variable(name) => {
                if !self.vars.contains(&name) {
                    return Err((t.pos, format!("undefined variable {name:?}")));
                }
                ArgKind::Variable(name, Vec::new())
            }
            Tok::Field(name) => ArgKind::Field(vec![name]),
            Tok::Bool(b) => ArgKind::Bool(b),
            Tok::Char(c) => ArgKind::Number(i64::from(u32::from(c)).into()),
            Tok::Number(text) => ArgKind::Number(number(&text).map_err(|msg| (t.pos, msg))?),
            Tok::String(s) => ArgKind::String(s),
            Tok::LeftParen => ArgKind::Pipe(Box::new(
                self.pipeline("parenthesized pipeline", &Tok::RightParen)?,
            )),
            _ => {
                self.i -= 1;
                return Ok(None);
            }
        };
        Ok(Some(Arg {
            pos: t.pos,
            label: label(&kind),
            kind,
        }))
    }
}

/// How errors show an operand: names (fields, variables, functions) as written, literals by
/// their kind only.
fn label(kind: &ArgKind) -> String {
    let fields = |names: &[String]| names.iter().map(|n| format!(".{n}")).collect::<String>();
    match kind {
        ArgKind::Field(names) => fields(names),
        ArgKind::Variable(name, names) => format!("{name}{}", fields(names)),
        ArgKind::Chain(_, names) => format!("(...){}", fields(names)),
        ArgKind::Dot => ".".into(),
        ArgKind::Nil => "nil".into(),
        ArgKind::Bool(b) => b.to_string(),
        ArgKind::Number(_) => "number".into(),
        ArgKind::String(_) => "string".into(),
        ArgKind::Function(name) => name.clone(),
        ArgKind::Pipe(_) => "(...)".into(),
    }
}
