//! Names the tensors of an unpickled tree (`pickle.rs` values), as the framework names them:
//! containers join keys and indices with `/` (a key set twice keeps its first place and its last
//! value, as in Python); an `nn.Module` record (state with `_parameters`, `_buffers`,
//! `_modules`) is named as `state_dict()` names it (dot-joined: its parameters, its persistent
//! buffers, then each child module; an `fx.GraphModule`'s `reduce_graph_module` record too); a
//! TorchScript module record by the `__parameters__` and
//! `__buffers__` its class declares (the [`ScriptClasses`] that `jit.rs` reads from `code/`);
//! another record by its attributes (its `BUILD` state), its items and entries, or, with no
//! state, its arguments; a NumPy array is a tensor.
//!
//! Bounded: the walk may visit at most [`VISITS_PER_NODE`] times as many values as there are
//! distinct containers (memo-shared subtrees, `L(k+1) = [L(k), L(k)]`, would otherwise expand
//! exponentially), nest [`MAX_DEPTH`] deep, and make [`MAX_NAME_BYTES`] of names. A container
//! met again inside itself (a cycle: an OmegaConf node's `_parent`) is passed over there.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Result};

use crate::source::pickle::{records, Record, Value};

/// TorchScript classes by qualified name (`__torch__.torch.nn.modules.conv.Conv2d`): their
/// parameter and buffer attribute names, in declaration order.
pub type ScriptClasses = HashMap<String, (Vec<String>, Vec<String>)>;

const MAX_DEPTH: usize = 200;
const VISITS_PER_NODE: u64 = 4;
const FREE_VISITS: u64 = 100_000;
const MAX_NAME_BYTES: u64 = 64 << 20;

/// Collects the tensors of a tree with their names.
#[derive(Default)]
pub(super) struct Walk<'a> {
    pub found: Vec<(String, Value)>,
    pub skipped: usize,
    pub first_skipped: Option<String>,
    pub script: Option<&'a ScriptClasses>,
    /// Classes named as modules (`nn.Module` records and TorchScript modules).
    pub modules: HashSet<String>,
    /// Modules with a `torch.ScriptObject` attribute holding tensors (the quantized modules'
    /// packed parameters), whose `state_dict()` entries only their own code computes: their
    /// names and classes, each once.
    pub opaque: Vec<String>,
    pub(super) visited: u64,
    pub(super) distinct: HashSet<usize>,
    pub(super) name_bytes: u64,
    /// The containers and records on the current path (from the root down): one met again inside itself
    /// is a back-reference (an OmegaConf node's `_parent`), which names nothing new.
    pub(super) path: HashSet<usize>,
}

pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    }
}

fn dot(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn key_text(k: &Value) -> Result<String> {
    Ok(match k {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::None => "None".to_string(),
        Value::Float(f) => py_float(*f),
        v => bail!(
            "a dict key is a {}, which cannot name a tensor",
            v.type_name()
        ),
    })
}

/// A float as Python's `str` writes it (`2.0`, `1e-05`, `1e+16`, `nan`): Rust's `{:?}` gives the
/// same shortest digits and switches to an exponent at the same points, written `e-5`, `e16`.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// The entries of a dict in Python's order: a key set twice keeps its first place and its last
/// value.
fn ordered(d: &[(Value, Value)]) -> Result<Vec<(String, Value)>> {
    let mut order: Vec<(String, Value)> = Vec::with_capacity(d.len());
    let mut place: HashMap<String, usize> = HashMap::with_capacity(d.len());
    let mut budget = HOLDS_TENSOR_VISITS;
    for (k, v) in d.iter() {
        let key = match key_text(k) {
            Ok(key) => key,
            // A key with no name (a tuple) over values that hold no tensor (metrics keyed by
            // `('val', 'acc')`) names nothing: left out like any other non-tensor value.
            Err(_) if !holds_tensor(v, 0, &mut budget) => continue,
            Err(e) => return Err(e),
        };
        match place.get(&key) {
            Some(&i) => order[i].1 = v.clone(),
            None => {
                place.insert(key.clone(), order.len());
                order.push((key, v.clone()));
            }
        }
    }
    Ok(order)
}

/// The entries of a dict-valued attribute of a record (`_parameters`), in order.
fn dict_attr(r: &Record, name: &str) -> Result<Vec<(String, Value)>> {
    match &r.attribute(name) {
        Some(Value::Dict(d)) => ordered(&d.borrow()),
        Some(Value::Record(inner)) => ordered(&inner.entries.borrow()),
        _ => Ok(Vec::new()),
    }
}

/// A lazy module never run (`nn.LazyLinear`) holds `UninitializedParameter`s (and
/// `UninitializedBuffer`s) with no data, which `state_dict()` lists all the same.
fn uninitialized(v: &Value) -> bool {
    matches!(v, Value::Record(r) if r.class.starts_with("torch.nn.parameter.Uninitialized"))
}

/// The value named for a parameter or buffer: an uninitialized one as a tensor with no data.
fn lazy(v: Value) -> Value {
    if uninitialized(&v) {
        Value::Unsupported("an uninitialized parameter of a lazy module never run (it has no data)")
    } else {
        v
    }
}

/// `torch.save` of a `torch.fx.GraphModule` (`symbolic_trace`, FX quantization) pickles as
/// `reduce_graph_module(module.__dict__ without its graph, import_block)` (or the package
/// variant, `reduce_package_graph_module(importer, __dict__, ...)`): that dict is the module's,
/// read as a module record of the same class.
fn graph_module(r: &Record) -> Option<Record> {
    if !r.class.starts_with("torch.fx.graph_module.reduce_") {
        return None;
    }
    let body = r.args.iter().find(|a| matches!(a, Value::Dict(_)))?;
    let m = Record {
        class: r.class.clone(),
        state: std::cell::RefCell::new(body.clone()),
        ..Default::default()
    };
    records::is_module(&m).then_some(m)
}

/// How many values [`holds_tensor`] may look at in one dict before it answers yes.
const HOLDS_TENSOR_VISITS: u64 = 100_000;

/// Whether a value may hold a tensor: yes for tensors, records, and whatever nests too deep or
/// past `budget` visits (memo-shared subtrees); no for plain data.
fn holds_tensor(v: &Value, depth: usize, budget: &mut u64) -> bool {
    if depth > MAX_DEPTH || *budget == 0 {
        return true;
    }
    *budget -= 1;
    match v {
        Value::Tensor(_) | Value::Unsupported(_) | Value::Record(_) => true,
        Value::NdArray(a) => is_tensor(&a.borrow()),
        Value::Dict(d) => d
            .borrow()
            .iter()
            .any(|(k, v)| holds_tensor(k, depth + 1, budget) || holds_tensor(v, depth + 1, budget)),
        Value::List(l) => l
            .borrow()
            .iter()
            .any(|v| holds_tensor(v, depth + 1, budget)),
        Value::Tuple(t) => t.iter().any(|v| holds_tensor(v, depth + 1, budget)),
        _ => false,
    }
}

/// The identity of a container or record (the memo shares them), `None` for other values.
fn container_ptr(v: &Value) -> Option<usize> {
    match v {
        Value::List(l) => Some(l.as_ptr() as usize),
        Value::Dict(d) => Some(d.as_ptr() as usize),
        Value::Tuple(t) => Some(t.as_ptr() as usize),
        Value::Record(r) => Some(std::rc::Rc::as_ptr(r) as usize),
        _ => None,
    }
}

fn is_tensor(v: &Value) -> bool {
    match v {
        Value::Tensor(_) | Value::Unsupported(_) => true,
        Value::NdArray(a) => is_tensor(&a.borrow()),
        _ => false,
    }
}

impl Walk<'_> {
    pub fn leaf(&mut self, name: String, v: &Value) -> Result<()> {
        self.name_bytes += name.len() as u64;
        if self.name_bytes > MAX_NAME_BYTES {
            bail!(
                "the tensor names add up to more than {} MiB (shared subtrees repeated?): refused as a memory bomb",
                MAX_NAME_BYTES >> 20
            );
        }
        let v = match v {
            Value::NdArray(a) => a.borrow().clone(),
            v => v.clone(),
        };
        self.found.push((name, v));
        Ok(())
    }

    fn skip(&mut self, name: String) {
        self.skipped += 1;
        self.first_skipped.get_or_insert(name);
    }

    /// Counts a visit; refuses walks that nest too deeply or revisit shared subtrees too often.
    fn enter(&mut self, v: &Value, depth: usize) -> Result<()> {
        self.visited += 1;
        if let Some(p) = container_ptr(v) {
            self.distinct.insert(p);
        }
        if depth > MAX_DEPTH {
            bail!("the pickled containers nest more than {MAX_DEPTH} deep (a cycle?)");
        }
        if self.visited > FREE_VISITS + VISITS_PER_NODE * self.distinct.len() as u64 {
            bail!(
                "the pickle shares subtrees so often that naming its tensors would expand it exponentially ({} containers reached {} times): refused as a memory bomb; nothing was written",
                self.distinct.len(),
                self.visited
            );
        }
        Ok(())
    }

    pub fn visit(&mut self, prefix: String, v: &Value, depth: usize) -> Result<()> {
        let ptr = container_ptr(v);
        if let Some(p) = ptr {
            if !self.path.insert(p) {
                return Ok(());
            }
        }
        let r = self.visit_value(prefix, v, depth);
        if let Some(p) = ptr {
            self.path.remove(&p);
        }
        r
    }

    fn visit_value(&mut self, prefix: String, v: &Value, depth: usize) -> Result<()> {
        self.enter(v, depth)?;
        match v {
            Value::Tensor(_) | Value::Unsupported(_) => self.leaf(prefix, v)?,
            Value::NdArray(a) => {
                if is_tensor(&a.borrow()) {
                    self.leaf(prefix, v)?;
                } else {
                    self.skip(prefix);
                }
            }
            Value::Dict(d) => {
                let order = ordered(&d.borrow())?;
                for (key, v) in order {
                    self.visit(join(&prefix, &key), &v, depth + 1)?;
                }
            }
            Value::List(l) => {
                let items = l.borrow().clone();
                for (i, v) in items.iter().enumerate() {
                    self.visit(join(&prefix, &i.to_string()), v, depth + 1)?;
                }
            }
            Value::Tuple(t) => {
                for (i, v) in t.iter().enumerate() {
                    self.visit(join(&prefix, &i.to_string()), v, depth + 1)?;
                }
            }
            Value::Record(r) => self.record(prefix, r, depth)?,
            _ => self.skip(prefix),
        }
        Ok(())
    }

    fn record(&mut self, prefix: String, r: &Record, depth: usize) -> Result<()> {
        if let Some(script) = self.script {
            if script.contains_key(&*r.class) {
                return self.script_module(&prefix, "", r, depth);
            }
        }
        if records::is_module(r) {
            return self.module(&prefix, "", r, depth);
        }
        if let Some(g) = graph_module(r) {
            return self.module(&prefix, "", &g, depth);
        }
        // `torch.compile(model)` pickles as `OptimizedModule(model, ...)`: its `state_dict()`
        // names the model's tensors under `_orig_mod.`.
        if &*r.class == "torch._dynamo.eval_frame.OptimizedModule" {
            if let Some(Value::Record(m)) = r.args.first() {
                if records::is_module(m) {
                    return self.module(&prefix, "_orig_mod", m, depth + 1);
                }
            }
        }
        if self.optimizer(&prefix, r, depth)? {
            return Ok(());
        }
        let attrs = r.attributes();
        let (items, entries) = (r.items.borrow().clone(), r.entries.borrow().clone());
        if attrs.is_empty() && items.is_empty() && entries.is_empty() {
            for (i, v) in r.args.iter().enumerate() {
                self.visit(join(&prefix, &i.to_string()), v, depth + 1)?;
            }
            return Ok(());
        }
        for (key, v) in ordered(&attrs)?.into_iter().chain(ordered(&entries)?) {
            self.visit(join(&prefix, &key), &v, depth + 1)?;
        }
        for (i, v) in items.iter().enumerate() {
            self.visit(join(&prefix, &i.to_string()), v, depth + 1)?;
        }
        Ok(())
    }

    /// A whole optimizer (`torch.save(optimizer)`: `defaults`, `state` keyed by the parameters,
    /// `param_groups`), named as its `state_dict()` names it: each parameter's state under the
    /// parameter's position in `param_groups` (`state/0/exp_avg`), then each group's entries but
    /// `params`. False, having named nothing, for a record of another shape.
    fn optimizer(&mut self, prefix: &str, r: &Record, depth: usize) -> Result<bool> {
        let (Some(groups), Some(state), Some(_)) = (
            r.attribute("param_groups"),
            r.attribute("state"),
            r.attribute("defaults"),
        ) else {
            return Ok(false);
        };
        let Value::List(groups) = &groups else {
            return Ok(false);
        };
        let entries = match &state {
            Value::Dict(d) => d.borrow().clone(),
            Value::Record(d) => d.entries.borrow().clone(),
            _ => return Ok(false),
        };
        let groups = groups.borrow().clone();
        let mut index: HashMap<usize, usize> = HashMap::new();
        let mut at = 0;
        let mut rest = Vec::with_capacity(groups.len());
        for g in &groups {
            let Value::Dict(g) = g else { return Ok(false) };
            let mut other = Vec::new();
            for (k, v) in ordered(&g.borrow())? {
                match (k.as_str(), &v) {
                    ("params", Value::List(ps)) => {
                        for p in ps.borrow().iter() {
                            let Value::Tensor(t) = p else {
                                return Ok(false);
                            };
                            index
                                .entry(std::sync::Arc::as_ptr(t) as usize)
                                .or_insert(at);
                            at += 1;
                        }
                    }
                    ("params", _) => return Ok(false),
                    _ => other.push((k, v)),
                }
            }
            rest.push(other);
        }
        let mut packed = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Value::Tensor(t) = &k else {
                return Ok(false);
            };
            let Some(i) = index.get(&(std::sync::Arc::as_ptr(t) as usize)) else {
                return Ok(false);
            };
            packed.push((*i, v));
        }
        for (i, v) in packed {
            self.visit(join(prefix, &format!("state/{i}")), &v, depth + 2)?;
        }
        for (g, other) in rest.into_iter().enumerate() {
            for (k, v) in other {
                self.visit(
                    join(prefix, &format!("param_groups/{g}/{k}")),
                    &v,
                    depth + 3,
                )?;
            }
        }
        Ok(true)
    }

    /// An `nn.Module`: `state_dict()` order and names (`module._save_to_state_dict`, then the
    /// children): parameters that are set, buffers not in `_non_persistent_buffers_set`, then
    /// each child module, keys joined with `.` below `prefix`.
    fn module(&mut self, prefix: &str, at: &str, r: &Record, depth: usize) -> Result<()> {
        self.enter(&Value::None, depth)?;
        self.modules.insert(r.class.to_string());
        for (name, v) in dict_attr(r, "_parameters")? {
            if is_tensor(&v) || uninitialized(&v) {
                self.leaf(join(prefix, &dot(at, &name)), &lazy(v))?;
            }
        }
        let transient: HashSet<String> = match &r.attribute("_non_persistent_buffers_set") {
            Some(Value::List(l)) => l.borrow().iter().filter_map(|k| key_text(k).ok()).collect(),
            _ => HashSet::new(),
        };
        for (name, v) in dict_attr(r, "_buffers")? {
            if (is_tensor(&v) || uninitialized(&v)) && !transient.contains(&name) {
                self.leaf(join(prefix, &dot(at, &name)), &lazy(v))?;
            }
        }
        self.packed(prefix, at, r);
        for (name, v) in dict_attr(r, "_modules")? {
            match &v {
                Value::Record(child) if records::is_module(child) => {
                    self.module(prefix, &dot(at, &name), child, depth + 1)?
                }
                Value::None => {}
                // A child that is not a module record (an allowed container, or a module with
                // its own `__getstate__`, as the quantized `Conv2d`): named as data.
                other => {
                    if let Value::Record(child) = other {
                        if let Some(g) = graph_module(child) {
                            self.module(prefix, &dot(at, &name), &g, depth + 1)?;
                            continue;
                        }
                        self.packed(prefix, &dot(at, &name), child);
                    }
                    self.visit(join(prefix, &dot(at, &name)), other, depth + 1)?
                }
            }
        }
        Ok(())
    }

    /// Notes a module with an attribute that keeps tensors in a `torch.ScriptObject`: pickled
    /// as one by `torch.save(model)`, or as a TorchScript custom class
    /// (`__torch__.torch.classes.quantized.LinearPackedParamsBase`, `...rnn.CellParamsBase`)
    /// by `torch.jit.save`, whose tensors `state_dict()` leaves out or only code computes.
    /// A TorchScript module with its own `__getstate__` (the quantized `Conv2d` keeps its
    /// packed weight and bias in a tuple state) has no attributes to name: noted the same way.
    fn packed(&mut self, prefix: &str, at: &str, r: &Record) {
        let attrs = r.attributes();
        let own_state = attrs.is_empty()
            && match &*r.state.borrow() {
                s @ (Value::Tuple(_) | Value::List(_)) => {
                    let mut budget = HOLDS_TENSOR_VISITS;
                    holds_tensor(s, 0, &mut budget)
                }
                _ => false,
            };
        let packed = own_state
            || attrs.iter().any(|(_, v)| match v {
                Value::Record(o)
                    if &*o.class == "torch.ScriptObject"
                        || o.class.starts_with("__torch__.torch.classes.") =>
                {
                    let mut budget = HOLDS_TENSOR_VISITS;
                    holds_tensor(&o.state.borrow(), 0, &mut budget)
                        || o.args.iter().any(|a| holds_tensor(a, 0, &mut budget))
                }
                _ => false,
            });
        if packed {
            let name = match join(prefix, at) {
                n if n.is_empty() => "(the root)".to_string(),
                n => n,
            };
            let entry = format!("{name} ({})", r.class);
            if !self.opaque.contains(&entry) {
                self.opaque.push(entry);
            }
        }
    }

    /// A TorchScript module: `torch.jit.load(f).state_dict()` order and names: its parameters,
    /// its buffers (TorchScript keeps non-persistent ones), then each attribute that is a
    /// module, depth first.
    fn script_module(&mut self, prefix: &str, at: &str, r: &Record, depth: usize) -> Result<()> {
        self.enter(&Value::None, depth)?;
        let script = self.script.expect("checked by the caller");
        let (params, buffers) = &script[&*r.class];
        self.modules.insert(r.class.to_string());
        self.packed(prefix, at, r);
        let attrs = ordered(&r.attributes())?;
        let get = |n: &str| attrs.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v);
        for name in params.iter().chain(buffers) {
            if let Some(v) = get(name).filter(|v| is_tensor(v)) {
                self.leaf(join(prefix, &dot(at, name)), v)?;
            }
        }
        for (name, v) in &attrs {
            if let Value::Record(child) = v {
                if script.contains_key(&*child.class) {
                    self.script_module(prefix, &dot(at, name), child, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn float_keys_are_written_as_python_writes_them() {
        for (f, py) in [
            (2.0, "2.0"),
            (1.5, "1.5"),
            (-0.0, "-0.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e-300, "1.5e-300"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(super::py_float(f), py);
        }
    }
}
