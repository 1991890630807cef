//! Executes a parse tree against data, following Go's `text/template` exec with `missingkey=error`.

use super::ast::{Arg, ArgKind, Branch, List, Node, Pipe};
use super::error::{Phase, TemplateError};
use super::functions;
use super::gofmt;
use super::parse::Tree;
use super::value::Value;

/// The most output one template may produce; a Kubernetes Secret holds at most 1 MiB.
const MAX_OUTPUT: usize = 16 << 20;
/// The most nodes and commands one execution may evaluate, so that a template cannot loop for ever.
const MAX_STEPS: usize = 5_000_000;
/// How deeply `{{template}}` calls may nest.
const MAX_DEPTH: usize = 100;

/// Functions whose first argument Go would mutate in place (maps are references); the
/// evaluator stores their result back into that variable.
const MUTATING: &[&str] = &[
    "set",
    "unset",
    "merge",
    "mustMerge",
    "mergeOverwrite",
    "mustMergeOverwrite",
];

type Result<T> = std::result::Result<T, TemplateError>;

enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) struct Exec<'a> {
    name: &'a str,
    text: &'a str,
    tree: &'a Tree,
    vars: Vec<(String, Value)>,
    out: Vec<u8>,
    steps: usize,
    depth: usize,
}

pub(crate) fn execute(name: &str, text: &str, tree: &Tree, data: &Value) -> Result<Vec<u8>> {
    let mut exec = Exec {
        name,
        text,
        tree,
        vars: vec![("$".to_owned(), data.clone())],
        out: Vec::new(),
        steps: 0,
        depth: 0,
    };
    exec.walk_list(data, &tree.root)?;
    Ok(exec.out)
}

impl Exec<'_> {
    fn error(&self, pos: usize, at: &str, message: String) -> TemplateError {
        let at = if at.is_empty() {
            String::new()
        } else {
            format!("<{at}>")
        };
        TemplateError::new(self.name, Phase::Execute, self.text, pos, at, message)
    }

    fn step(&mut self, pos: usize) -> Result<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(self.error(pos, "", "template takes too many steps".into()));
        }
        Ok(())
    }

    fn write(&mut self, pos: usize, bytes: &[u8]) -> Result<()> {
        if self.out.len() + bytes.len() > MAX_OUTPUT {
            return Err(self.error(pos, "", "template output too large".into()));
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn walk_list(&mut self, dot: &Value, list: &List) -> Result<Flow> {
        for node in list {
            match self.walk(dot, node)? {
                Flow::Normal => {}
                flow => return Ok(flow),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Value, node: &Node) -> Result<Flow> {
        match node {
            Node::Text(s) => self.write(0, s.as_bytes())?,
            Node::Action(pipe) => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    // An action prints nil as "<no value>"; fmt would print "<nil>".
                    let mut bytes = Vec::new();
                    match v {
                        Value::Null => bytes.extend_from_slice(b"<no value>"),
                        v => gofmt::write_value(&mut bytes, &v),
                    }
                    self.write(pipe.pos, &bytes)?;
                }
            }
            Node::If(branch) => return self.walk_if_or_with(dot, branch, false),
            Node::With(branch) => return self.walk_if_or_with(dot, branch, true),
            Node::Range(branch) => return self.walk_range(dot, branch),
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
            Node::Template { pos, name, pipe } => {
                let Some(list) = self.tree.defines.get(name) else {
                    return Err(self.error(*pos, "", format!("no such template {name:?}")));
                };
                let data = match pipe {
                    Some(pipe) => self.eval_pipeline(dot, pipe)?,
                    None => Value::Null,
                };
                if self.depth >= MAX_DEPTH {
                    return Err(self.error(*pos, "", "exceeded maximum template depth".into()));
                }
                let outer = std::mem::replace(&mut self.vars, vec![("$".to_owned(), data.clone())]);
                self.depth += 1;
                let result = self.walk_list(&data, list);
                self.depth -= 1;
                self.vars = outer;
                result?;
            }
        }
        Ok(Flow::Normal)
    }

    fn walk_if_or_with(&mut self, dot: &Value, branch: &Branch, with: bool) -> Result<Flow> {
        let mark = self.vars.len();
        let value = self.eval_pipeline(dot, &branch.pipe)?;
        let flow = if value.is_true() {
            let dot = if with { &value } else { dot };
            self.walk_list(dot, &branch.list)
        } else if let Some(else_list) = &branch.else_list {
            self.walk_list(dot, else_list)
        } else {
            Ok(Flow::Normal)
        };
        self.vars.truncate(mark);
        flow
    }

    fn walk_range(&mut self, dot: &Value, branch: &Branch) -> Result<Flow> {
        let mark = self.vars.len();
        let value = self.eval_pipeline(dot, &branch.pipe)?;
        let pipe = &branch.pipe;
        // Lists and maps are already in memory; an integer range is counted, not built.
        let (len, items): (i64, Box<dyn Iterator<Item = (Value, Value)>>) = match value {
            Value::List(items) => (
                items.len() as i64,
                Box::new(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (Value::int(i as i64), v)),
                ),
            ),
            Value::Map(map) => (
                map.len() as i64,
                Box::new(map.into_iter().map(|(k, v)| (Value::String(k), v))),
            ),
            Value::Null => (0, Box::new(std::iter::empty())),
            Value::Number(ref n) if n.is_i64() => {
                if pipe.decl.len() > 1 {
                    let message = "can't use an integer to iterate over more than one variable";
                    return Err(self.error(pipe.pos, "", message.into()));
                }
                let n = n.as_i64().unwrap_or_default().max(0);
                (n, Box::new((0..n).map(|i| (Value::int(i), Value::int(i)))))
            }
            other => {
                let message = format!(
                    "range can't iterate over a value of type {}",
                    other.type_name()
                );
                return Err(self.error(pipe.pos, "", message));
            }
        };
        let body_mark = self.vars.len();
        for (index, elem) in items {
            self.step(pipe.pos)?;
            self.set_range_vars(pipe, index, elem.clone())?;
            let flow = self.walk_list(&elem, &branch.list);
            self.vars.truncate(body_mark);
            if let Flow::Break = flow? {
                break;
            }
        }
        let flow = match (&branch.else_list, len) {
            (Some(else_list), 0) => self.walk_list(dot, else_list),
            _ => Ok(Flow::Normal),
        };
        self.vars.truncate(mark);
        flow.map(|_| Flow::Normal)
    }

    fn set_range_vars(&mut self, pipe: &Pipe, index: Value, elem: Value) -> Result<()> {
        let n = self.vars.len();
        match (pipe.decl.as_slice(), pipe.is_assign) {
            ([], _) => {}
            ([_], false) => self.vars[n - 1].1 = elem,
            ([one], true) => self.set_var(pipe.pos, one, elem)?,
            ([_, _], false) => {
                self.vars[n - 2].1 = index;
                self.vars[n - 1].1 = elem;
            }
            ([first, second, ..], _) => {
                self.set_var(pipe.pos, first, index)?;
                self.set_var(pipe.pos, second, elem)?;
            }
        }
        Ok(())
    }

    fn set_var(&mut self, pos: usize, name: &str, value: Value) -> Result<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = value;
                Ok(())
            }
            None => Err(self.error(pos, name, format!("undefined variable {name:?}"))),
        }
    }

    fn var(&self, arg: &Arg, name: &str) -> Result<Value> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.error(arg.pos, &arg.src, format!("undefined variable {name:?}"))),
        }
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &Pipe) -> Result<Value> {
        let mut value = None;
        for cmd in &pipe.cmds {
            self.step(cmd.pos)?;
            value = Some(self.eval_command(dot, &cmd.args, value)?);
        }
        let value = value.unwrap_or_default();
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(pipe.pos, name, value.clone())?;
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &[Arg], last: &Option<Value>) -> Result<()> {
        if args.len() > 1 || last.is_some() {
            return Err(self.error(
                args[0].pos,
                &args[0].src,
                format!("can't give argument to non-function {}", args[0].src),
            ));
        }
        Ok(())
    }

    /// Evaluates one command; `last` is the value piped in from the previous command.
    fn eval_command(&mut self, dot: &Value, args: &[Arg], last: Option<Value>) -> Result<Value> {
        let first = &args[0];
        let has_args = args.len() > 1 || last.is_some();
        match &first.kind {
            ArgKind::Field(names) => self.eval_fields(dot.clone(), first, names, has_args),
            ArgKind::Chain(node, names) => {
                let receiver = self.eval_arg(dot, node)?;
                self.eval_fields(receiver, first, names, has_args)
            }
            ArgKind::Variable(name, names) => {
                let value = self.var(first, name)?;
                if names.is_empty() {
                    self.not_a_function(args, &last)?;
                    return Ok(value);
                }
                self.eval_fields(value, first, names, has_args)
            }
            ArgKind::Function(name) => self.call(dot, first, name, &args[1..], last),
            ArgKind::Pipe(pipe) => {
                self.not_a_function(args, &last)?;
                self.eval_pipeline(dot, pipe)
            }
            ArgKind::Nil => Err(self.error(first.pos, &first.src, "nil is not a command".into())),
            ArgKind::Dot | ArgKind::Bool(_) | ArgKind::Number(_) | ArgKind::String(_) => {
                self.not_a_function(args, &last)?;
                self.eval_arg(dot, first)
            }
        }
    }

    /// `.a.b.c` on `receiver`. Maps only: a missing key is an error (`missingkey=error`).
    fn eval_fields(
        &self,
        mut receiver: Value,
        node: &Arg,
        names: &[String],
        has_args: bool,
    ) -> Result<Value> {
        let fail = |message: String| Err(self.error(node.pos, &node.src, message));
        for (i, name) in names.iter().enumerate() {
            receiver = match receiver {
                Value::Map(mut map) => {
                    if has_args && i == names.len() - 1 {
                        return fail(format!("{name} is not a method but has arguments"));
                    }
                    match map.remove(name) {
                        Some(v) => v,
                        None => return fail(format!("map has no entry for key {name:?}")),
                    }
                }
                Value::Null => {
                    return fail(format!("nil pointer evaluating interface {{}}.{name}"));
                }
                other => {
                    return fail(format!(
                        "can't evaluate field {name} in type {}",
                        other.type_name()
                    ));
                }
            };
        }
        Ok(receiver)
    }

    fn eval_arg(&mut self, dot: &Value, arg: &Arg) -> Result<Value> {
        match &arg.kind {
            ArgKind::Dot => Ok(dot.clone()),
            ArgKind::Nil => Ok(Value::Null),
            ArgKind::Bool(b) => Ok(Value::Bool(*b)),
            ArgKind::Number(n) => Ok(Value::Number(n.clone())),
            ArgKind::String(s) => Ok(Value::String(s.clone())),
            ArgKind::Field(names) => self.eval_fields(dot.clone(), arg, names, false),
            ArgKind::Variable(name, names) => {
                let value = self.var(arg, name)?;
                self.eval_fields(value, arg, names, false)
            }
            ArgKind::Chain(node, names) => {
                let receiver = self.eval_arg(dot, node)?;
                self.eval_fields(receiver, arg, names, false)
            }
            ArgKind::Pipe(pipe) => self.eval_pipeline(dot, pipe),
            ArgKind::Function(name) => self.call(dot, arg, name, &[], None),
        }
    }

    fn call(
        &mut self,
        dot: &Value,
        node: &Arg,
        name: &str,
        args: &[Arg],
        last: Option<Value>,
    ) -> Result<Value> {
        let fail = |this: &Self, message: String| Err(this.error(node.pos, &node.src, message));
        let Some(function) = functions::lookup(name) else {
            return fail(self, functions::unknown_message(name));
        };
        let count = args.len() + usize::from(last.is_some());
        if count < function.min_args || function.max_args.is_some_and(|max| count > max) {
            let want = match function.max_args {
                Some(max) if max == function.min_args => format!("{max}"),
                Some(max) => format!("{}-{max}", function.min_args),
                None => format!("at least {}", function.min_args),
            };
            return fail(
                self,
                format!("wrong number of args for {name}: want {want} got {count}"),
            );
        }
        match name {
            "and" | "or" => {
                let mut value = Value::Null;
                for arg in args {
                    value = self.eval_arg(dot, arg)?;
                    if value.is_true() == (name == "or") {
                        return Ok(value);
                    }
                }
                Ok(last.unwrap_or(value))
            }
            "fail" => {
                // The message is shown only when it is template text, never when it is computed from data.
                let message = match (args.first(), &last) {
                    (
                        Some(Arg {
                            kind: ArgKind::String(s),
                            ..
                        }),
                        None,
                    ) => s.clone(),
                    _ => "(message computed from data not shown)".into(),
                };
                fail(self, format!("error calling fail: {message}"))
            }
            _ => {
                let mut values = Vec::with_capacity(count);
                for arg in args {
                    values.push(self.eval_arg(dot, arg)?);
                }
                values.extend(last);
                let result = match (function.call)(&values) {
                    Ok(v) => v,
                    Err(message) => return fail(self, format!("error calling {name}: {message}")),
                };
                if MUTATING.contains(&name)
                    && let Some(Arg {
                        kind: ArgKind::Variable(var, fields),
                        pos,
                        ..
                    }) = args.first()
                    && fields.is_empty()
                {
                    self.set_var(*pos, var, result.clone())?;
                }
                Ok(result)
            }
        }
    }
}
