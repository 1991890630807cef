//! The parse tree of a template, after Go's `text/template/parse` nodes.

/// A sequence of nodes.
pub(crate) type List = Vec<Node>;

#[derive(Debug)]
pub(crate) enum Node {
    Text(String),
    /// `{{ pipeline }}`: prints the value unless the pipeline declares variables.
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Break,
    Continue,
    /// `{{ template "name" pipeline }}`.
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
}

/// The shared shape of `if`, `with` and `range`.
#[derive(Debug)]
pub(crate) struct Branch {
    pub pipe: Pipe,
    pub list: List,
    pub else_list: Option<List>,
}

/// `$x := cmd | cmd arg`.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub pos: usize,
    /// `=` rather than `:=`.
    pub is_assign: bool,
    pub decl: Vec<String>,
    pub cmds: Vec<Command>,
}

#[derive(Debug)]
pub(crate) struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

/// An operand, with the byte position where it starts.
#[derive(Debug)]
pub(crate) struct Arg {
    pub pos: usize,
    /// How errors show the operand: its field, variable or function names, or the kind of
    /// literal, never the literal itself (a `templateFrom` template may hold a secret).
    pub label: String,
    pub kind: ArgKind,
}

#[derive(Debug)]
pub(crate) enum ArgKind {
    /// `.a.b`
    Field(Vec<String>),
    /// `$x.a.b`: the variable name (with `$`) and the fields after it.
    Variable(String, Vec<String>),
    /// `(pipeline).a.b` or any other term followed by fields.
    Chain(Box<Arg>, Vec<String>),
    Dot,
    Nil,
    Bool(bool),
    /// A number literal, already typed as Go types it for an `interface{}` parameter.
    Number(serde_json::Number),
    String(String),
    Function(String),
    Pipe(Box<Pipe>),
}
