//! Executes a parse tree against data, following Go's `text/template` exec with `missingkey=error`.

use super::ast::{Arg, ArgKind, Branch, List, Node, Pipe};
use super::budget::{Budget, Exceeded, Limits};
use super::error::{Phase, TemplateError};
use super::functions::{self, Call, Refusal};
use super::gofmt;
use super::operands::{first_arg_is_only, moves_first_arg, walk_fields};
use super::parse::Tree;
use super::value::Value;

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
    budget: Budget,
    /// Whether operands being evaluated are arguments of a plain function, which only reads
    /// them: their copies are dropped after the call (what it keeps is charged as its
    /// result), so they count against the room left and as work, not as bytes created.
    /// Otherwise `len $d` in a range would charge a copy of `$d` per iteration.
    transient: bool,
    /// Nesting of control structures, parenthesised pipelines and `{{template}}` calls.
    depth: usize,
}

pub(crate) fn execute(
    name: &str,
    text: &str,
    tree: &Tree,
    data: &Value,
    limits: Limits,
) -> Result<Vec<u8>> {
    let mut exec = Exec {
        name,
        text,
        tree,
        vars: vec![("$".to_owned(), data.clone())],
        out: Vec::new(),
        budget: Budget::new(limits),
        transient: false,
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

    fn over(&self, pos: usize, at: &str, exceeded: Exceeded) -> TemplateError {
        let at = if at.is_empty() {
            String::new()
        } else {
            format!("<{at}>")
        };
        TemplateError::budget(self.name, self.text, pos, at, exceeded)
    }

    fn step(&mut self, pos: usize) -> Result<()> {
        self.budget.step().map_err(|e| self.over(pos, "", e))
    }

    /// A copy of `v` that may be kept (in a variable, a list...), charged to the budget
    /// first (Go would share it; Rust copies it).
    fn copy_kept(&mut self, pos: usize, v: &Value) -> Result<Value> {
        self.budget.copy(v).map_err(|e| self.over(pos, "", e))?;
        Ok(v.clone())
    }

    /// A copy of an operand: kept, unless it is an argument of a plain function (see
    /// `transient`).
    fn copy(&mut self, pos: usize, at: &str, v: &Value) -> Result<Value> {
        self.charge_operand(v).map_err(|e| self.over(pos, at, e))?;
        Ok(v.clone())
    }

    fn charge_operand(&mut self, v: &Value) -> std::result::Result<(), Exceeded> {
        if self.transient {
            self.budget.transient(v)
        } else {
            self.budget.copy(v)
        }
    }

    fn write(&mut self, pos: usize, bytes: &[u8]) -> Result<()> {
        let len = self.out.len().saturating_add(bytes.len());
        self.budget.output(len).map_err(|e| self.over(pos, "", e))?;
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// Runs `f` one level deeper, refusing to go past the depth limit (each level is Rust
    /// stack; Go's stacks grow, a Rust thread's overflow aborts the process).
    fn nested<T>(&mut self, pos: usize, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.budget
            .depth(self.depth + 1)
            .map_err(|e| self.over(pos, "", e))?;
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
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
                let v = self.eval_pipeline(dot, pipe, false)?;
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
            Node::If(branch) => {
                return self.nested(branch.pipe.pos, |e| e.walk_if_or_with(dot, branch, false));
            }
            Node::With(branch) => {
                return self.nested(branch.pipe.pos, |e| e.walk_if_or_with(dot, branch, true));
            }
            Node::Range(branch) => {
                return self.nested(branch.pipe.pos, |e| e.walk_range(dot, branch));
            }
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
            Node::Template { pos, name, pipe } => {
                let Some(list) = self.tree.defines.get(name) else {
                    return Err(self.error(*pos, "", format!("no such template {name:?}")));
                };
                let data = match pipe {
                    Some(pipe) => self.eval_pipeline(dot, pipe, true)?,
                    None => Value::Null,
                };
                let dollar = self.copy_kept(*pos, &data)?;
                let outer = std::mem::replace(&mut self.vars, vec![("$".to_owned(), dollar)]);
                let result = self.nested(*pos, |e| e.walk_list(&data, list));
                self.vars = outer;
                result?;
            }
        }
        Ok(Flow::Normal)
    }

    fn walk_if_or_with(&mut self, dot: &Value, branch: &Branch, with: bool) -> Result<Flow> {
        let mark = self.vars.len();
        let value = self.eval_pipeline(dot, &branch.pipe, true)?;
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
        let value = self.eval_pipeline(dot, &branch.pipe, true)?;
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
            if !pipe.decl.is_empty() {
                let copy = self.copy_kept(pipe.pos, &elem)?;
                self.set_range_vars(pipe, index, copy)?;
            }
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

    /// The value of `$x`, leaving nil in its place (see [`moves_first_arg`]).
    fn take_var(&mut self, name: &str) -> Value {
        self.vars
            .iter_mut()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| std::mem::take(v))
            .unwrap_or_default()
    }

    /// A copy of `$x.a.b`, charged to the budget.
    fn var(&mut self, arg: &Arg, name: &str, names: &[String], has_args: bool) -> Result<Value> {
        let Some((_, value)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
            return Err(self.error(arg.pos, &arg.label, format!("undefined variable {name:?}")));
        };
        let leaf = walk_fields(value, names, has_args)
            .map_err(|message| self.error(arg.pos, &arg.label, message))?;
        let charged = if self.transient {
            self.budget.transient(leaf)
        } else {
            self.budget.copy(leaf)
        };
        if let Err(e) = charged {
            return Err(self.over(arg.pos, &arg.label, e));
        }
        Ok(leaf.clone())
    }

    /// A copy of `.a.b` (or of `(x).a.b`) from `receiver`, charged to the budget.
    fn fields(
        &mut self,
        receiver: &Value,
        arg: &Arg,
        names: &[String],
        has_args: bool,
    ) -> Result<Value> {
        let leaf = walk_fields(receiver, names, has_args)
            .map_err(|message| self.error(arg.pos, &arg.label, message))?;
        self.copy(arg.pos, &arg.label, leaf)
    }

    /// Evaluates a pipeline and declares or assigns its variables. `keep` says whether the
    /// caller uses the value; when it does not (`{{ $x := ... }}`), the value is moved into
    /// the variable instead of copied.
    fn eval_pipeline(&mut self, dot: &Value, pipe: &Pipe, keep: bool) -> Result<Value> {
        let mut value = None;
        let moving = moves_first_arg(pipe);
        for cmd in &pipe.cmds {
            self.step(cmd.pos)?;
            value = Some(self.eval_command(dot, &cmd.args, value, moving)?);
        }
        let mut value = value.unwrap_or_default();
        for (i, name) in pipe.decl.iter().enumerate() {
            let last = i + 1 == pipe.decl.len();
            let stored = if last && !keep {
                std::mem::take(&mut value)
            } else {
                self.copy_kept(pipe.pos, &value)?
            };
            if pipe.is_assign {
                self.set_var(pipe.pos, name, stored)?;
            } else {
                self.vars.push((name.clone(), stored));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &[Arg], last: &Option<Value>) -> Result<()> {
        if args.len() > 1 || last.is_some() {
            return Err(self.error(
                args[0].pos,
                &args[0].label,
                format!("can't give argument to non-function {}", args[0].label),
            ));
        }
        Ok(())
    }

    /// Evaluates one command; `last` is the value piped in from the previous command.
    /// `moving`: see [`moves_first_arg`].
    fn eval_command(
        &mut self,
        dot: &Value,
        args: &[Arg],
        last: Option<Value>,
        moving: bool,
    ) -> Result<Value> {
        let first = &args[0];
        let has_args = args.len() > 1 || last.is_some();
        match &first.kind {
            ArgKind::Field(names) => self.fields(dot, first, names, has_args),
            ArgKind::Chain(node, names) => {
                let receiver = self.eval_arg(dot, node)?;
                self.fields(&receiver, first, names, has_args)
            }
            ArgKind::Variable(name, names) => {
                if names.is_empty() {
                    self.not_a_function(args, &last)?;
                }
                self.var(first, name, names, has_args)
            }
            ArgKind::Function(name) => self.call(dot, first, name, &args[1..], last, moving),
            ArgKind::Pipe(pipe) => {
                self.not_a_function(args, &last)?;
                self.nested(first.pos, |e| e.eval_pipeline(dot, pipe, true))
            }
            ArgKind::Nil => Err(self.error(first.pos, &first.label, "nil is not a command".into())),
            ArgKind::Dot | ArgKind::Bool(_) | ArgKind::Number(_) | ArgKind::String(_) => {
                self.not_a_function(args, &last)?;
                self.eval_arg(dot, first)
            }
        }
    }

    fn eval_arg(&mut self, dot: &Value, arg: &Arg) -> Result<Value> {
        match &arg.kind {
            ArgKind::Dot => self.copy(arg.pos, "", dot),
            ArgKind::Nil => Ok(Value::Null),
            ArgKind::Bool(b) => Ok(Value::Bool(*b)),
            ArgKind::Number(n) => Ok(Value::Number(n.clone())),
            ArgKind::String(s) => {
                let s = Value::String(s.clone());
                self.charge_operand(&s)
                    .map_err(|e| self.over(arg.pos, "", e))?;
                Ok(s)
            }
            ArgKind::Field(names) => self.fields(dot, arg, names, false),
            ArgKind::Variable(name, names) => self.var(arg, name, names, false),
            ArgKind::Chain(node, names) => {
                let receiver = self.eval_arg(dot, node)?;
                self.fields(&receiver, arg, names, false)
            }
            ArgKind::Pipe(pipe) => self.nested(arg.pos, |e| e.eval_pipeline(dot, pipe, true)),
            ArgKind::Function(name) => self.call(dot, arg, name, &[], None, false),
        }
    }

    fn call(
        &mut self,
        dot: &Value,
        node: &Arg,
        name: &str,
        args: &[Arg],
        last: Option<Value>,
        moving: bool,
    ) -> Result<Value> {
        let fail = |this: &Self, message: String| Err(this.error(node.pos, &node.label, message));
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
                // `set $d k v` stores its result back into `$d` (see MUTATING): `$d` is
                // overwritten, so it can be moved in as `$x = f $x` is.
                let moving = moving
                    || (MUTATING.contains(&name)
                        && last.is_none()
                        && matches!(&args.first(), Some(Arg { kind: ArgKind::Variable(v, _), .. })
                            if first_arg_is_only(args, v)));
                let mut values = Vec::with_capacity(count);
                let outer =
                    std::mem::replace(&mut self.transient, matches!(function.call, Call::Plain(_)));
                for (i, arg) in args.iter().enumerate() {
                    let value = match &arg.kind {
                        ArgKind::Variable(var, _) if moving && i == 0 => self.take_var(var),
                        _ => match self.eval_arg(dot, arg) {
                            Ok(v) => v,
                            Err(e) => {
                                self.transient = outer;
                                return Err(e);
                            }
                        },
                    };
                    values.push(value);
                }
                self.transient = outer;
                values.extend(last);
                let result = match &function.call {
                    Call::Plain(call) => call(&values).map_err(Refusal::Error).and_then(|v| {
                        // Plain functions make at most a small multiple of their arguments;
                        // what they made is charged now.
                        self.budget.copy(&v)?;
                        Ok(v)
                    }),
                    Call::Budgeted(call) => call(values, &mut self.budget),
                };
                let result = match result {
                    Ok(v) => v,
                    Err(Refusal::Error(message)) => {
                        return fail(self, format!("error calling {name}: {message}"));
                    }
                    Err(Refusal::Budget(e)) => return Err(self.over(node.pos, &node.label, e)),
                };
                if MUTATING.contains(&name)
                    && let Some(Arg {
                        kind: ArgKind::Variable(var, fields),
                        pos,
                        ..
                    }) = args.first()
                    && fields.is_empty()
                {
                    let copy = self.copy_kept(*pos, &result)?;
                    self.set_var(*pos, var, copy)?;
                }
                Ok(result)
            }
        }
    }
}
