//! How the evaluator reads operands without copying them: field walks, and when a
//! variable may be moved into a function instead of copied.

use super::ast::{Arg, ArgKind, Pipe};
use super::value::Value;

/// Whether `pipe` is `$x = f $x ...` with no other argument reading `$x`: then `$x` is moved
/// into `f` instead of copied, since the result overwrites it. This keeps the idiom
/// `{{ $l = append $l . }}` in a `range` linear, as Go's shared slices are, instead of a
/// copy of the whole list per iteration.
pub(crate) fn moves_first_arg(pipe: &Pipe) -> bool {
    let ([target], true, [cmd]) = (pipe.decl.as_slice(), pipe.is_assign, pipe.cmds.as_slice())
    else {
        return false;
    };
    let [function, args @ ..] = cmd.args.as_slice() else {
        return false;
    };
    matches!(&function.kind, ArgKind::Function(f) if !matches!(f.as_str(), "and" | "or" | "fail"))
        && first_arg_is_only(args, target)
}

/// Whether `args` start with the variable `target` (no fields) and no other argument reads it.
pub(crate) fn first_arg_is_only(args: &[Arg], target: &str) -> bool {
    let [first, rest @ ..] = args else {
        return false;
    };
    let reads_target = |arg: &Arg| match &arg.kind {
        ArgKind::Variable(v, _) => v == target,
        ArgKind::Dot
        | ArgKind::Nil
        | ArgKind::Bool(_)
        | ArgKind::Number(_)
        | ArgKind::String(_)
        | ArgKind::Field(_) => false,
        // A sub-pipeline may read it.
        ArgKind::Chain(..) | ArgKind::Pipe(_) | ArgKind::Function(_) => true,
    };
    matches!(&first.kind, ArgKind::Variable(v, fields) if v == target && fields.is_empty())
        && !rest.iter().any(reads_target)
}

/// Walks `.a.b.c` from `receiver` without copying: maps only, and a missing key is an error
/// (`missingkey=error`). The error is a message naming the field, never a value.
pub(crate) fn walk_fields<'v>(
    mut receiver: &'v Value,
    names: &[String],
    has_args: bool,
) -> std::result::Result<&'v Value, String> {
    for (i, name) in names.iter().enumerate() {
        receiver = match receiver {
            Value::Map(map) => {
                if has_args && i == names.len() - 1 {
                    return Err(format!("{name} is not a method but has arguments"));
                }
                match map.get(name) {
                    Some(v) => v,
                    None => return Err(format!("map has no entry for key {name:?}")),
                }
            }
            Value::Null => return Err(format!("nil pointer evaluating interface {{}}.{name}")),
            other => {
                return Err(format!(
                    "can't evaluate field {name} in type {}",
                    other.type_name()
                ));
            }
        };
    }
    Ok(receiver)
}
