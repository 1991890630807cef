//! The render budget: how much memory, output, time and nesting one render may use.
//!
//! Templates are written by tenants and rendered inside the shared controller, so one
//! template must not be able to take its memory (chart limit 256 MiB) or its CPU. Go's
//! engine has no such limits; ours refuses, with a [`Limit`] error, before it allocates
//! past them.
//!
//! Memory is counted as the total bytes of values a render *creates*, never given back:
//! every builtin result and every copy the evaluator makes (Rust values are copied where Go
//! passes references). That total bounds the render's peak memory beyond its input data,
//! and also bounds the CPU of quadratic loops such as `$l = append $l x` in a `range`.

use std::fmt;

use super::value::Value;

/// Which part of the budget a render exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The total bytes of values the render creates.
    Bytes,
    /// The elements of one list or map.
    Elements,
    /// The bytes one template writes.
    Output,
    /// Evaluation steps: nodes, commands and `range` iterations.
    Steps,
    /// Nesting of control structures, parentheses and `{{template}}` calls.
    Depth,
}

/// The budget of one render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of values created (strings, list and map elements).
    pub bytes: usize,
    /// Elements of one list or map.
    pub elements: usize,
    /// Bytes of output of one template.
    pub output: usize,
    /// Evaluation steps.
    pub steps: usize,
    /// Nesting depth, when parsing and when executing.
    pub depth: usize,
}

impl Default for Limits {
    /// 16 MiB of values: sixteen times the largest Secret, and a render at a time per worker
    /// still fits the controller's 256 MiB. 1 MiB of output: a Kubernetes Secret holds no
    /// more. 100,000 elements: far beyond any Secret's keys, small enough that a list of them
    /// costs a few MiB. One million steps: about a second in a debug build. Depth 100: deeper
    /// than any hand-written template, and shallow enough for a 2 MiB thread stack (Go grows
    /// its stacks; a Rust thread that overflows aborts the whole controller).
    fn default() -> Self {
        Limits {
            bytes: 16 << 20,
            elements: 100_000,
            output: 1 << 20,
            steps: 1_000_000,
            depth: 100,
        }
    }
}

/// A limit hit, with the message that says which and by how much (never a value).
#[derive(Debug)]
pub(crate) struct Exceeded {
    pub limit: Limit,
    pub message: String,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "render budget exceeded: {}", self.message)
    }
}

/// What one element of a list costs beyond its own contents.
pub(crate) const VALUE_SIZE: usize = std::mem::size_of::<Value>();

/// Comparisons and similar inner-loop work that count as one step.
const WORK_PER_STEP: usize = 1024;

/// Bytes copied per unit of work: a step per 4 KiB.
const BYTES_PER_WORK: usize = 4;

/// The account of one render.
pub(crate) struct Budget {
    limits: Limits,
    created: usize,
    steps: usize,
    /// Inner-loop work not yet counted as steps.
    work: usize,
}

pub(crate) type Charge = Result<(), Exceeded>;

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            created: 0,
            steps: 0,
            work: 0,
        }
    }

    /// Records `bytes` about to be allocated; refuses if the render would pass its total.
    pub fn alloc(&mut self, bytes: usize) -> Charge {
        match self.created.checked_add(bytes) {
            Some(total) if total <= self.limits.bytes => {
                self.created = total;
                Ok(())
            }
            _ => Err(self.bytes_exceeded()),
        }
    }

    /// Refuses, without recording it, an allocation of `bytes` that would pass the total.
    pub fn check(&self, bytes: usize) -> Charge {
        if self.created.saturating_add(bytes) > self.limits.bytes {
            return Err(self.bytes_exceeded());
        }
        Ok(())
    }

    fn bytes_exceeded(&self) -> Exceeded {
        Exceeded {
            limit: Limit::Bytes,
            message: format!("values of more than {} bytes", self.limits.bytes),
        }
    }

    /// Records a string of `len` bytes about to be built.
    pub fn string(&mut self, len: usize) -> Charge {
        self.alloc(len)
    }

    /// Records a list of `n` elements about to be built (its elements' contents are charged apart).
    pub fn list(&mut self, n: usize) -> Charge {
        self.elements("list", n)?;
        self.alloc(n.saturating_mul(VALUE_SIZE))
    }

    /// Records a map of `n` entries about to be built (keys and values are charged apart).
    pub fn map(&mut self, n: usize) -> Charge {
        self.elements("map", n)?;
        self.alloc(n.saturating_mul(2 * VALUE_SIZE))
    }

    /// Refuses a list or map of more than the limit of elements.
    pub fn elements(&self, what: &str, n: usize) -> Charge {
        if n > self.limits.elements {
            return Err(Exceeded {
                limit: Limit::Elements,
                message: format!("{what} of more than {} elements", self.limits.elements),
            });
        }
        Ok(())
    }

    /// Records a copy of `v` about to be made; also checks the size of each list and map in it.
    pub fn copy(&mut self, v: &Value) -> Charge {
        let size = self.deep_size(v)?;
        self.alloc(size)
    }

    /// Records a copy of `v` about to be made and dropped soon after (an argument a function
    /// only reads): it must fit in the room left, and copying it is work, a step per 4 KiB.
    pub fn transient(&mut self, v: &Value) -> Charge {
        let size = self.deep_size(v)?;
        self.check(size)?;
        self.work(size / BYTES_PER_WORK)
    }

    /// Checks every list and map in a value just made (by a decoder) against the element limit.
    pub fn measure(&self, v: &Value) -> Charge {
        self.deep_size(v).map(|_| ())
    }

    /// The bytes `v` holds: its strings and, for lists and maps, their elements' slots.
    fn deep_size(&self, v: &Value) -> Result<usize, Exceeded> {
        Ok(match v {
            Value::String(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Bool(_) | Value::Number(_) | Value::Null => 0,
            Value::List(items) => {
                self.elements("list", items.len())?;
                let mut size = items.len() * VALUE_SIZE;
                for item in items {
                    size = size.saturating_add(self.deep_size(item)?);
                }
                size
            }
            Value::Map(map) => {
                self.elements("map", map.len())?;
                let mut size = map.len() * 2 * VALUE_SIZE;
                for (k, item) in map {
                    size = size.saturating_add(k.len() + self.deep_size(item)?);
                }
                size
            }
        })
    }

    /// Counts one evaluation step.
    pub fn step(&mut self) -> Charge {
        self.steps += 1;
        if self.steps > self.limits.steps {
            return Err(Exceeded {
                limit: Limit::Steps,
                message: format!("more than {} steps", self.limits.steps),
            });
        }
        Ok(())
    }

    /// Counts `n` units of inner-loop work (comparisons), a step per [`WORK_PER_STEP`].
    pub fn work(&mut self, n: usize) -> Charge {
        self.work = self.work.saturating_add(n);
        while self.work >= WORK_PER_STEP {
            self.work -= WORK_PER_STEP;
            self.step()?;
        }
        Ok(())
    }

    /// Refuses an output that would grow to `len` bytes.
    pub fn output(&self, len: usize) -> Charge {
        if len > self.limits.output {
            return Err(Exceeded {
                limit: Limit::Output,
                message: format!("output of more than {} bytes", self.limits.output),
            });
        }
        Ok(())
    }

    /// Refuses nesting deeper than the limit.
    pub fn depth(&self, depth: usize) -> Charge {
        too_deep(&self.limits, depth)
    }
}

pub(crate) fn too_deep(limits: &Limits, depth: usize) -> Charge {
    if depth > limits.depth {
        return Err(Exceeded {
            limit: Limit::Depth,
            message: format!("nesting deeper than {}", limits.depth),
        });
    }
    Ok(())
}
