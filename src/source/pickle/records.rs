//! Inert records: what the unpickler builds for a global that is off the allow-list but not an
//! attack. A class of the training code (`__main__.Net`, `lightning...AttributeDict`), a
//! `torch.nn` module, a TorchScript class (`__torch__.Net`) is never imported and never called:
//! the pickle's `REDUCE` / `NEWOBJ` of it becomes a [`Record`] holding the class's qualified name,
//! the arguments it would have been called with, the state `BUILD` would have set, and the items
//! `APPEND(S)` / `SETITEM(S)` would have added. Readers find tensors inside records as inside
//! dicts and lists (`torch/mod.rs` names `nn.Module` records as `state_dict()` does); other
//! readers of pickled object graphs (DCP `.metadata`) can match on [`Record::class`] and read the
//! fields they know.
//!
//! Globals that only make sense in an attack (`os.system`, `builtins.eval`, `subprocess.Popen`,
//! ...) are refused by name ([`is_attack`]), as are all globals in strict (`--weights-only`) mode.

use std::cell::RefCell;
use std::rc::Rc;

use super::Value;

/// An object of a class that is not on the allow-list, read as data: nothing was imported or
/// called to make it.
#[derive(Debug, Default)]
pub struct Record {
    /// The global's qualified name, `module.name` (`torch.nn.modules.linear.Linear`).
    pub class: Rc<str>,
    /// The arguments of the call (`REDUCE`) or of `cls.__new__` (`NEWOBJ`, `NEWOBJ_EX`).
    pub args: Vec<Value>,
    /// What `BUILD` would set (usually the instance `__dict__`), `Value::None` when none.
    pub state: RefCell<Value>,
    /// Items appended by `APPEND` / `APPENDS` (a list subclass).
    pub items: RefCell<Vec<Value>>,
    /// Entries set by `SETITEM` / `SETITEMS` (a dict subclass), in order.
    pub entries: RefCell<Vec<(Value, Value)>>,
}

impl Record {
    pub fn new(class: Rc<str>, args: Vec<Value>) -> Record {
        Record {
            class,
            args,
            ..Default::default()
        }
    }

    /// The `BUILD` state as key/value pairs when it is a dict (or the `(dict, slots)` pair of a
    /// class with `__slots__`), in order.
    pub fn attributes(&self) -> Vec<(Value, Value)> {
        let state = self.state.borrow();
        let mut out = Vec::new();
        let mut add = |v: &Value| {
            if let Value::Dict(d) = v {
                out.extend(d.borrow().iter().cloned());
            }
        };
        match &*state {
            Value::Tuple(t) if t.len() == 2 => t.iter().for_each(&mut add),
            v => add(v),
        }
        out
    }

    /// The value of attribute `name` in the `BUILD` state (the last one set wins).
    pub fn attribute(&self, name: &str) -> Option<Value> {
        self.attributes()
            .into_iter()
            .rev()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == name))
            .map(|(_, v)| v)
    }
}

/// Modules whose every global is a way to run code, touch the system or unpickle again.
const ATTACK_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "posixpath",
    "ntpath",
    "subprocess",
    "_posixsubprocess",
    "sys",
    "shutil",
    "socket",
    "_socket",
    "ctypes",
    "_ctypes",
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "marshal",
    "code",
    "codeop",
    "importlib",
    "imp",
    "runpy",
    "pty",
    "commands",
    "popen2",
    "platform",
    "webbrowser",
    "multiprocessing",
    "threading",
    "_thread",
    "signal",
    "pdb",
    "bdb",
    "timeit",
    "tempfile",
    "pathlib",
    "glob",
    "io",
    "_io",
    "fileinput",
    "urllib",
    "urllib2",
    "http",
    "httplib",
    "ftplib",
    "smtplib",
    "telnetlib",
    "requests",
    "asyncio",
    "operator",
    "types",
    "inspect",
    "gc",
    "ast",
    "zipimport",
    "pkgutil",
    "site",
    "torch.hub",
    "torch.serialization",
    "torch._C",
    "torch.jit",
    "torch.ops",
    "torch.utils.cpp_extension",
    "numpy.testing",
    "numpy.f2py",
    "numpy.distutils",
];

/// `builtins` globals that are plain data types (everything else there is refused).
const BUILTIN_DATA: &[&str] = &[
    "object",
    "set",
    "frozenset",
    "bytearray",
    "bytes",
    "complex",
    "slice",
    "range",
    "list",
    "dict",
    "tuple",
    "int",
    "float",
    "str",
    "bool",
    "NoneType",
    // the names protocol 2 gives `range`, `int`, `str` and `...` (Python 2's)
    "xrange",
    "long",
    "unicode",
    "Ellipsis",
];

/// True for a global that only an attack would name: its module is one of
/// [`ATTACK_MODULES`] (or below one), or it is a `builtins` function (`eval`, `exec`,
/// `compile`, `open`, `getattr`, `__import__`, ...) rather than a data type.
pub fn is_attack(module: &str, name: &str) -> bool {
    let below = |m: &str| module == m || module.strip_prefix(m).is_some_and(|r| r.starts_with('.'));
    if matches!(module, "builtins" | "__builtin__" | "__builtins__") {
        return !BUILTIN_DATA.contains(&name);
    }
    // Dunder lookups (`__class__`, `__globals__`, `__subclasses__`) are reflection, not data.
    if name.contains("__") && !name.starts_with("__") {
        return true;
    }
    // `torch._C._nn` holds the tensor ops behind `torch.nn.functional` (`gelu`, `silu`, ...),
    // `_linalg`, `_fft`, `_special` and `_sparse` those of `torch.linalg`, ...: whole modules
    // keep one as an attribute (Hugging Face's GELU, `nn.TransformerEncoderLayer`).
    if (OP_MODULES.contains(&module) && !name.contains('.')) || is_op_namespace(module, name) {
        return false;
    }
    // Plain values of modules an attack names otherwise: paths (`args.output_dir`) and
    // `types.SimpleNamespace` configurations kept in checkpoints.
    if DATA_CLASSES.contains(&(module, name)) {
        return false;
    }
    ATTACK_MODULES.iter().any(|m| below(m)) || name.split('.').any(|p| p == "__globals__")
}

/// Classes of otherwise refused modules whose instances are plain values.
const DATA_CLASSES: &[(&str, &str)] = &[
    ("pathlib", "Path"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
    ("pathlib._local", "PosixPath"),
    ("pathlib._local", "WindowsPath"),
    ("pathlib._local", "PurePosixPath"),
    ("pathlib._local", "PureWindowsPath"),
    ("types", "SimpleNamespace"),
    // `torch.Generator` (a sampler's, in accelerate's `sampler.bin`): pickled as
    // `torch._C.Generator(device)` with its seed and state as `BUILD`'s tuple
    ("torch._C", "Generator"),
];

/// The modules of `torch._C` that hold only tensor ops.
const OP_MODULES: &[&str] = &[
    "torch._C._nn",
    "torch._C._linalg",
    "torch._C._fft",
    "torch._C._special",
    "torch._C._sparse",
    "torch._C._nested",
];

/// The classes whose attributes are tensor ops: a whole module holding `torch.tanh` or
/// `torch.Tensor.add` pickles it as `getattr(torch._C._VariableFunctionsClass, 'tanh')` or
/// `getattr(torch._C.TensorBase, 'add')` (`allow.rs` reads such a `getattr` as a record).
pub fn is_op_namespace(module: &str, name: &str) -> bool {
    module == "torch._C" && matches!(name, "_VariableFunctionsClass" | "TensorBase")
}

/// The kind of a class, for notes: `nn.Module` records are named as their state dict.
pub fn is_module(r: &Record) -> bool {
    let a = r.attributes();
    let has = |n: &str| {
        a.iter()
            .any(|(k, _)| matches!(k, Value::Str(s) if &**s == n))
    };
    has("_parameters") && has("_buffers") && has("_modules")
}

/// The children of a uniquely held record, for the iterative drop of `Value`.
pub(super) fn take_children(r: &mut Rc<Record>, work: &mut Vec<Value>) {
    if let Some(r) = Rc::get_mut(r) {
        work.append(&mut r.args);
        work.push(std::mem::take(r.state.get_mut()));
        work.append(r.items.get_mut());
        for (k, v) in r.entries.get_mut().drain(..) {
            work.push(k);
            work.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_are_told_from_classes() {
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("nt", "system"),
            ("subprocess", "Popen"),
            ("builtins", "eval"),
            ("__builtin__", "exec"),
            ("builtins", "getattr"),
            ("builtins", "__import__"),
            ("importlib.import_module", "x"),
            ("importlib", "import_module"),
            ("runpy", "run_path"),
            ("sys", "modules"),
            ("ctypes", "CDLL"),
            ("pickle", "loads"),
            ("marshal", "loads"),
            ("code", "InteractiveInterpreter"),
            ("shutil", "rmtree"),
            ("socket", "socket"),
            ("torch._C", "_load_for_lite_interpreter"),
            ("torch._C._nn", "gelu.__globals__"),
        ] {
            assert!(is_attack(m, n), "{m}.{n}");
        }
        for (m, n) in [
            ("__main__", "Net"),
            ("torch.nn.modules.linear", "Linear"),
            ("__torch__", "Net"),
            ("builtins", "set"),
            ("argparse", "Namespace"),
            ("ossify", "Thing"),
            ("torch._C._nn", "gelu"),
            ("torch._C._linalg", "linalg_norm"),
            ("pathlib", "PosixPath"),
            ("types", "SimpleNamespace"),
            ("builtins", "xrange"),
            ("torch._C", "_VariableFunctionsClass"),
            ("torch._C", "TensorBase"),
        ] {
            assert!(!is_attack(m, n), "{m}.{n}");
        }
    }
}
